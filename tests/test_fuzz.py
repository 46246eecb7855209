"""Random bad inputs at the public entry points: each call gives a clear TypeError or ValueError
(naming what was expected or what was received), or a correct result. Never another exception."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from helpers import tiny_generator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

import genaug
from genaug.data import MixedDataset, SyntheticDataset
from genaug.transforms import SyntheticBatchMix, SyntheticReplace

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CLEAR = re.compile(r"\bgot\b|expected|must|should|needs?\b|give ")

GEN = tiny_generator("vae")
DTYPES = [torch.uint8, torch.int8, torch.int32, torch.int64, torch.bool, torch.float16, torch.float32,
          torch.float64]
junk = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=5),
                 st.lists(st.integers(-2, 12), max_size=4), st.just(object()), st.just(np.zeros(3)))


def _clear(fn):
    """Call fn: return its result, or None after checking the error is a clear TypeError/ValueError."""
    try:
        return fn()
    except (TypeError, ValueError) as err:
        assert CLEAR.search(str(err)), f"unclear message: {type(err).__name__}: {err}"
        return None


@st.composite
def tensors(draw, shape=None):
    dtype = draw(st.sampled_from(DTYPES))
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
        if draw(st.booleans()):
            shape = (draw(st.integers(0, 6)), *GEN.image_shape)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 99))))
    scale = draw(st.sampled_from([1.0, 255.0, -1.0, 2.0]))
    x = x * scale
    if x.numel() and draw(st.booleans()):
        x.view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf"), -3.0, 300.0]))
    if dtype == torch.bool:
        return x > 0.5
    if not dtype.is_floating_point:
        return x.nan_to_num(0, 0, 0).clamp(-100, 300).to(dtype) if dtype != torch.uint8 else \
            x.nan_to_num(0, 0, 0).clamp(0, 255).to(dtype)
    return x.to(dtype)


labels_st = st.one_of(
    tensors(),
    st.builds(lambda n, lo, hi, dt: torch.randint(lo, hi + 1, (n,)).to(dt), st.integers(0, 6), st.integers(-3, 9),
              st.integers(9, 12), st.sampled_from([torch.int64, torch.int32, torch.uint8, torch.float32])),
    junk,
)


@FUZZ
@given(images=st.one_of(tensors(), junk), labels=labels_st, value_range=st.one_of(st.none(), st.just((-1, 1)),
                                                                                  st.just((0, 255)), junk))
def test_batch_mix(images, labels, value_range):
    mix = _clear(lambda: SyntheticBatchMix(GEN, fraction=0.5, seed=0, value_range=value_range))
    if mix is None:
        return
    result = _clear(lambda: mix(images, labels))
    if result is None:
        return
    out, out_labels = result
    # A correct result: the batch's shape, dtype and range, labels in range, half the items replaced.
    assert out.shape == images.shape and out.dtype == images.dtype and out_labels.dtype == labels.dtype
    assert images.dtype == torch.uint8 or images.is_floating_point()
    lo, hi = (0, 255) if images.dtype == torch.uint8 else (mix.value_range or (0.0, 1.0))
    assert bool(torch.isfinite(out.float()).all())
    assert out.numel() == 0 or (float(out.min()) >= lo and float(out.max()) <= hi)
    assert out_labels.shape == labels.shape and (out_labels.numel() == 0 or int(out_labels.max()) < 10)
    kept = (out == images).flatten(1).all(1).sum() if len(images) else 0
    assert kept >= len(images) - round(0.5 * len(images))


@FUZZ
@given(fraction=st.one_of(st.floats(-1, 2), junk), balance=st.one_of(st.sampled_from(["batch", "uniform"]), junk),
       mode=st.one_of(st.sampled_from(["replace", "append"]), junk), seed=st.one_of(st.integers(-2, 3), junk),
       truncation=st.one_of(st.floats(-1, 2), junk))
def test_batch_mix_settings(fraction, balance, mode, seed, truncation):
    mix = _clear(lambda: SyntheticBatchMix(GEN, fraction=fraction, balance=balance, mode=mode, seed=seed,
                                           truncation=truncation))
    if mix is not None:
        x, y = mix(torch.rand(4, *GEN.image_shape), torch.arange(4))
        assert x.shape[1:] == GEN.image_shape and len(x) == len(y) >= 4


@FUZZ
@given(model=st.one_of(st.just(GEN), junk, st.just("mnist-cvae")), size=st.one_of(st.integers(-2, 30), junk),
       per_class=st.one_of(st.none(), st.integers(-1, 3), junk),
       class_weights=st.one_of(st.none(), st.lists(st.floats(-1, 2), max_size=11),
                               st.dictionaries(st.sampled_from(["0", "3", "x"]), st.floats(0, 2), max_size=2), junk),
       classes=st.one_of(st.none(), st.lists(st.sampled_from(["0", "1", "x"]), max_size=2)),
       seed=st.one_of(st.integers(-2, 3), junk), truncation=st.one_of(st.floats(-1, 2), junk),
       output=st.one_of(st.sampled_from(["tensor", "pil"]), junk))
def test_synthetic_dataset(model, size, per_class, class_weights, classes, seed, truncation, output):
    ds = _clear(lambda: SyntheticDataset(model, size=size, per_class=per_class, class_weights=class_weights,
                                         classes=classes, seed=seed, truncation=truncation, output=output))
    if ds is None:
        return
    img, label = ds[len(ds) - 1]
    assert isinstance(label, int) and 0 <= label < 10
    assert (tuple(img.shape) if output == "tensor" else (1, img.size[1], img.size[0])) == GEN.image_shape


class Real(torch.utils.data.Dataset):
    def __init__(self, targets, n):
        self.targets, self.n = targets, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.rand(*GEN.image_shape), 0


@FUZZ
@given(targets=st.one_of(st.lists(st.integers(-1, 11), min_size=1, max_size=8), tensors(), junk),
       model=st.one_of(st.just(GEN), junk),
       fraction=st.one_of(st.none(), st.floats(-0.5, 1.5), junk),
       balance=st.one_of(st.none(), st.sampled_from(["uniform", "match", "nope"]),
                         st.dictionaries(st.sampled_from(["0", "3", "x", 4, 20]), st.integers(-1, 3), max_size=2)))
def test_mixed_dataset(targets, model, fraction, balance):
    try:
        n = len(targets) if not isinstance(targets, str) else 3
    except TypeError:  # no len(), or a 0-d tensor
        n = 3
    mixed = _clear(lambda: MixedDataset(Real(targets, n), model, synthetic_fraction=fraction, balance=balance))
    if mixed is None:
        return
    assert len(mixed) >= n and len(mixed.targets) == len(mixed)
    img, label = mixed[len(mixed) - 1]
    assert tuple(img.shape) == GEN.image_shape and 0 <= int(label) < 10


@FUZZ
@given(model=st.one_of(st.just(GEN), junk), p=st.one_of(st.floats(-1, 2), junk),
       bank_size=st.one_of(st.integers(-1, 5), junk), image=st.one_of(tensors(), junk), label=st.one_of(
           st.integers(-2, 12), junk, tensors(shape=())))
def test_synthetic_replace(model, p, bank_size, image, label):
    tf = _clear(lambda: SyntheticReplace(model, p=p, bank_size=bank_size, seed=0))
    if tf is None:
        return
    result = _clear(lambda: tf(image, label))
    if result is None:
        return
    out, out_label = result
    assert out_label is label
    if isinstance(image, torch.Tensor):
        assert out.shape == image.shape and out.dtype == image.dtype


@FUZZ
@given(name=st.one_of(junk, st.text(max_size=12), st.sampled_from(["mnist-cvae", "", "/", "."])))
def test_load_generator(name):
    # A name or path that doesn't exist is a FileNotFoundError, which says so and lists the names.
    try:
        gen = genaug.load_generator(name)
    except FileNotFoundError as err:
        assert "registered names" in str(err)
        return
    except (TypeError, ValueError) as err:
        assert CLEAR.search(str(err)), err
        return
    assert isinstance(gen, genaug.Generator) and name == "mnist-cvae"


@FUZZ
@given(labels=labels_st, generator=st.one_of(st.none(), st.just(torch.Generator().manual_seed(0)), junk),
       truncation=st.one_of(st.floats(-1, 2), junk))
def test_sample(labels, generator, truncation):
    out = _clear(lambda: GEN.sample(labels, generator=generator, truncation=truncation))
    if out is not None:
        assert out.shape == (len(labels), *GEN.image_shape) and out.dtype == torch.float32
        assert out.numel() == 0 or (float(out.min()) >= 0 and float(out.max()) <= 1)


def test_mixed_dataset_refuses_float_targets():
    real = TensorDataset(torch.rand(6, *GEN.image_shape), torch.arange(6))
    assert len(MixedDataset(real, GEN, synthetic_fraction=0.5)) == 12
    with pytest.raises(TypeError, match=r"Real.targets must be 1-D int labels, got dtype torch.float32"):
        MixedDataset(Real(torch.arange(6).float(), 6), GEN, synthetic_fraction=0.5)
