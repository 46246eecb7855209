from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_generator
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from genaug.data import MNISTSample
from genaug.transforms import SyntheticBatchMix, SyntheticReplace

GEN = tiny_generator("vae")

KINDS = ["pil", "uint8", "float32", "float64", "tv_image", "uint8_hw"]


def make_image(kind: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 28, 28, generator=g)
    if kind == "pil":
        return Image.fromarray((base[0] * 255).to(torch.uint8).numpy(), mode="L")
    if kind == "uint8":
        return (base * 255).to(torch.uint8)
    if kind == "uint8_hw":
        return (base[0] * 255).to(torch.uint8)
    if kind == "float64":
        return base.double()
    if kind == "tv_image":
        return tv_tensors.Image(base)
    return base


def describe(x):
    if isinstance(x, Image.Image):
        return ("pil", x.mode, x.size)
    return (type(x), x.dtype, tuple(x.shape))


def value_range_ok(x):
    if isinstance(x, Image.Image):
        return True
    return float(x.min()) >= 0 and float(x.max()) <= (255 if x.dtype == torch.uint8 else 1)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), label=st.integers(0, 9), p=st.floats(0, 1), seed=st.integers(0, 10_000))
def test_type_dtype_shape_range_and_label_kept(kind, label, p, seed):
    img = make_image(kind, seed)
    out_img, out_label = SyntheticReplace(GEN, p=p, seed=seed)(img, label)
    assert describe(out_img) == describe(img)
    assert type(out_img) is type(img)
    assert value_range_ok(out_img)
    assert out_label == label


@settings(max_examples=20, deadline=None)
@given(kind=st.sampled_from(KINDS), label=st.integers(0, 9), seed=st.integers(0, 10_000))
def test_p0_is_identity_and_p1_all_synthetic(kind, label, seed):
    img = make_image(kind, seed)
    same, _ = SyntheticReplace(GEN, p=0.0, seed=seed)(img, label)
    assert same is img
    synthetic, lab = SyntheticReplace(GEN, p=1.0, seed=seed)(img, label)
    a = np.asarray(synthetic) if isinstance(synthetic, Image.Image) else synthetic.numpy()
    b = np.asarray(img) if isinstance(img, Image.Image) else img.numpy()
    assert lab == label and not np.array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_fast_path_equals_the_generic_transform_path(kind):
    """(image, label) calls skip v2's flattening; a dict sample goes through it. Same images, and
    each equals match_like of the bank's float image (banks are converted once per refill)."""
    from genaug.transforms import match_like

    fast, generic = SyntheticReplace(GEN, p=0.7, seed=3), SyntheticReplace(GEN, p=0.7, seed=3)
    reference = SyntheticReplace(GEN, p=0.7, seed=3)
    replaced = 0
    for i in range(20):
        img = make_image(kind, i)
        a, label_a = fast(img, i % 10)
        b = generic({"image": img, "label": i % 10})
        rng = reference._rng.get()
        replace = reference._rng.random() < 0.7
        expected = match_like(reference._banks.take(i % 10, rng)[0], img) if replace else img
        for got in (a, b["image"]):
            assert type(got) is type(img)
            assert np.array_equal(np.asarray(got), np.asarray(expected))
        assert label_a == b["label"] == i % 10
        replaced += replace
    assert 0 < replaced < 20


def test_replacement_is_of_the_same_class():
    from helpers import ClassShade

    tf = SyntheticReplace(ClassShade(), p=1.0, seed=0)
    for label in [0, 7, 3, 7, 9]:
        x, y = tf(torch.zeros(1, 28, 28), label)
        assert y == label and abs(float(x.mean()) - label / 10) < 0.05


def test_inside_compose_and_dataloader_workers():
    tf = v2.Compose([SyntheticReplace(GEN, p=0.5), v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
    ds = MNISTSample(train=False, transform=None)
    ds.transforms = None

    class Wrapped(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return tf(*ds[i])

    def run(workers):
        loader = DataLoader(Wrapped(), batch_size=10, num_workers=workers, generator=torch.Generator().manual_seed(0))
        torch.manual_seed(0)
        return torch.cat([x for x, _ in loader]), torch.cat([y for _, y in loader])

    x, y = run(2)
    assert x.shape == (40, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(y, ds.targets[:40])
    real = torch.stack([v2.functional.to_dtype(v2.functional.pil_to_tensor(ds[i][0]), torch.float32, scale=True)
                        for i in range(40)])
    replaced = (x - real).flatten(1).abs().amax(1) > 0
    assert 5 < int(replaced.sum()) < 35  # about half, and the two workers drew different streams
    x2, _ = run(2)
    assert torch.equal(x, x2)  # deterministic for a fixed seed


def test_bad_input():
    with pytest.raises(ValueError, match=r"p must be in \[0.0, 1.0\], got 1.5"):
        SyntheticReplace(GEN, p=1.5)
    with pytest.raises(ValueError, match="p must be a finite number, got nan"):
        SyntheticReplace(GEN, p=float("nan"))
    with pytest.raises(ValueError, match="expects \\(image, label\\) inputs"):
        SyntheticReplace(GEN, p=1.0)(torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match=r"label must be in \[0, 9\]"):
        SyntheticReplace(GEN, p=1.0)(torch.zeros(1, 28, 28), 12)
    with pytest.raises(ValueError, match=r"expected an image tensor of shape \(1, 28, 28\)"):
        SyntheticReplace(GEN, p=1.0)(torch.zeros(3, 32, 32), 1)
    with pytest.raises(ValueError, match="place SyntheticReplace before Normalize"):
        SyntheticReplace(GEN, p=1.0)(torch.full((1, 28, 28), -0.5), 1)


@pytest.mark.parametrize("mode", ["replace", "append"])
@pytest.mark.parametrize("balance", ["batch", "uniform"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_batch_mix(mode, balance, dtype):
    x = (torch.rand(16, 1, 28, 28) * (255 if dtype == torch.uint8 else 1)).to(dtype)
    y = torch.arange(16) % 10
    mix = SyntheticBatchMix(GEN, fraction=0.25, mode=mode, balance=balance, seed=0)
    xo, yo = mix(x, y)
    n = 16 if mode == "replace" else 20
    assert xo.shape == (n, 1, 28, 28) and xo.dtype == dtype and yo.shape == (n,)
    changed = (xo[:16] != x).flatten(1).any(1)
    if mode == "replace":
        assert int(changed.sum()) == 4
        if balance == "batch":
            assert torch.equal(yo, y)
    else:
        assert not changed.any() and torch.equal(yo[:16], y)
    xo2, yo2 = SyntheticBatchMix(GEN, fraction=0.25, mode=mode, balance=balance, seed=0)(x, y)
    assert torch.equal(xo, xo2) and torch.equal(yo, yo2)


def test_batch_mix_as_collate_fn_and_transform():
    from genaug.data import SyntheticDataset

    ds = SyntheticDataset(GEN, size=32)
    mix = SyntheticBatchMix(GEN, fraction=0.5, seed=0, transform=lambda t: t * 0 + 0.5)
    x, y = next(iter(DataLoader(ds, batch_size=8, collate_fn=mix.collate)))
    assert x.shape == (8, 1, 28, 28) and int((x == 0.5).flatten(1).all(1).sum()) == 4
    with pytest.raises(ValueError, match=r"fraction must be in \[0.0, 1.0\], got -0.1"):
        SyntheticBatchMix(GEN, fraction=-0.1)
    with pytest.raises(ValueError, match=r"got a batch of \(3, 28, 28\)"):
        mix(torch.zeros(2, 3, 28, 28), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\], got values in \[0, 11\]"):
        mix(torch.zeros(2, 1, 28, 28), torch.tensor([0, 11]))


def test_albumentations_adapter():
    A = pytest.importorskip("albumentations")
    from genaug.transforms.albumentations import SyntheticReplaceA

    img = (np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)
    aug = A.Compose([SyntheticReplaceA(GEN, p=1.0, seed=0), A.HorizontalFlip(p=1.0)])
    out = aug(image=img, label=4)
    assert out["image"].shape == (28, 28) and out["image"].dtype == np.uint8
    assert out["label"] == 4 and not np.array_equal(out["image"], img[:, ::-1])
    ref = GEN.sample(torch.full((64,), 4), generator=torch.Generator().manual_seed(0))[-1, 0]
    ref = np.clip(np.round(ref.numpy() * 255), 0, 255).astype(np.uint8)[:, ::-1]
    assert np.array_equal(out["image"], ref)  # synthetic of class 4, then the same flip as real images
    same = A.Compose([SyntheticReplaceA(GEN, p=0.0)])(image=img, label=4)["image"]
    assert np.array_equal(same, img)
    with pytest.raises(ValueError, match="needs the label"):
        A.Compose([SyntheticReplaceA(GEN, p=1.0)])(image=img)
