"""One generic suite over every dataset class, the way torchvision tests its datasets."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch
from helpers import tiny_generator
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from genaug.data import HDF5Dataset, MixedDataset, MNISTSample, SyntheticDataset, SyntheticStream, export_hdf5


@pytest.fixture(scope="module")
def gen():
    return tiny_generator("vae")


@pytest.fixture(scope="module")
def h5(gen, tmp_path_factory):
    return export_hdf5(gen, tmp_path_factory.mktemp("h5") / "s.h5", n=30, progress=False)


def make(name, gen, h5, **kw):
    if name == "synthetic":
        return SyntheticDataset(gen, size=30, block_size=8, **kw)
    if name == "synthetic-pil":
        return SyntheticDataset(gen, size=30, output="pil", **kw)
    if name == "stream":
        return SyntheticStream(gen, num_samples=30, batch_size=8, **kw)
    if name == "mixed":
        # The real dataset gets the same transforms, as a user would configure it.
        return MixedDataset(MNISTSample(train=False, **kw), gen, synthetic_fraction=0.2, output="pil", **kw)
    if name == "hdf5":
        return HDF5Dataset(h5, **kw)
    if name == "mnist-sample":
        return MNISTSample(**kw)
    raise AssertionError(name)


DATASETS = ["synthetic", "synthetic-pil", "stream", "mixed", "hdf5", "mnist-sample"]
EXPECTED_LEN = {"synthetic": 30, "synthetic-pil": 30, "stream": 30, "mixed": 625, "hdf5": 30, "mnist-sample": 1000}


def items(ds, n=None):
    out = list(ds) if isinstance(ds, IterableDataset) else [ds[i] for i in range(len(ds))]
    return out[:n] if n else out


@pytest.mark.parametrize("name", DATASETS)
def test_length_types_and_repr(name, gen, h5):
    ds = make(name, gen, h5)
    assert len(ds) == EXPECTED_LEN[name]
    got = items(ds)
    assert len(got) == len(ds)
    img, label = got[0]
    assert isinstance(label, int) and 0 <= label < 10
    assert isinstance(img, (torch.Tensor, Image.Image))
    if isinstance(img, torch.Tensor):
        assert img.shape == (1, 28, 28)
    r = repr(ds)
    assert type(ds).__name__ in r and "Number of datapoints" in r
    if hasattr(ds, "targets"):
        assert [lab for _, lab in got] == torch.as_tensor(ds.targets).tolist()
    assert len(ds.classes) == 10


@pytest.mark.parametrize("name", DATASETS)
def test_transform_and_target_transform_are_applied(name, gen, h5):
    ds = make(name, gen, h5, transform=lambda im: ("seen", im), target_transform=lambda t: t + 100)
    # MixedDataset's transforms apply to its synthetic items (the last ones); real items keep theirs.
    (tag, _), label = items(ds)[-1]
    assert tag == "seen" and label >= 100


@pytest.mark.parametrize("name", ["synthetic", "stream", "mixed", "hdf5"])
@pytest.mark.parametrize("workers", [0, 2])
def test_same_items_whatever_the_worker_count(name, gen, h5, workers):
    ds = make(name, gen, h5, transform=_to_tensor)
    shuffle = not isinstance(ds, IterableDataset)
    ref = _collect(DataLoader(ds, batch_size=4, shuffle=shuffle, generator=torch.Generator().manual_seed(1)))
    got = _collect(DataLoader(ds, batch_size=4, shuffle=shuffle, num_workers=workers,
                              generator=torch.Generator().manual_seed(1)))
    if isinstance(ds, IterableDataset):  # workers interleave blocks: compare as sets
        ref, got = sorted(ref, key=_key), sorted(got, key=_key)
    assert len(ref) == len(got) == len(ds)
    for (xa, ya), (xb, yb) in zip(ref, got, strict=True):
        assert ya == yb
        # Workers compute with one thread: float sums may differ in the last bit, nothing more.
        torch.testing.assert_close(xa, xb, atol=1e-6, rtol=0)


def _to_tensor(img):
    if isinstance(img, Image.Image):
        from torchvision.transforms.v2 import functional as F

        return F.to_dtype(F.pil_to_tensor(img), torch.float32, scale=True)
    return img.float() / 255 if img.dtype == torch.uint8 else img


def _collect(loader):
    return [(x, int(y)) for xb, yb in loader for x, y in zip(xb, yb, strict=True)]


def _key(item):
    return (item[1], tuple(item[0].flatten()[:64].mul(1e4).round().tolist()))


def test_synthetic_item_is_a_function_of_seed_and_index(gen):
    a = SyntheticDataset(gen, size=50, seed=3, block_size=16)
    b = SyntheticDataset(gen, size=50, seed=3, block_size=16, cache_blocks=1)
    for i in [49, 0, 17, 33, 17]:
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    c = SyntheticDataset(gen, size=50, seed=4, block_size=16)
    assert not torch.equal(a[0][0], c[0][0])
    assert torch.bincount(SyntheticDataset(gen, per_class=5).targets).tolist() == [5] * 10
    sub = SyntheticDataset(gen, size=40, classes=["2", "7"])
    assert set(sub.targets.tolist()) == {2, 7}


def test_stream_has_no_duplicates_across_workers_and_ranks(gen):
    seen = []
    for rank in range(2):
        stream = SyntheticStream(gen, num_samples=64, batch_size=8, rank=rank, world_size=2)
        for x, _ in DataLoader(stream, batch_size=None, num_workers=2):
            seen.append(x)
    assert len(seen) == 64
    flat = torch.stack(seen).flatten(1)
    assert len(torch.unique(flat, dim=0)) == 64
    whole = torch.stack([x for x, _ in SyntheticStream(gen, num_samples=64, batch_size=8)]).flatten(1)
    assert torch.equal(torch.unique(flat, dim=0), torch.unique(whole, dim=0))
    s = SyntheticStream(gen, batch_size=4)
    first = next(iter(s))[0]
    s.set_epoch(1)
    assert not torch.equal(first, next(iter(s))[0])


class _ThreadProbe(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.get_num_threads(), get_worker_info() is not None


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_fork_spawn_persistent(gen, context):
    ds = SyntheticDataset(gen, size=24, block_size=8)
    ref = torch.stack([ds[i][0] for i in range(24)])
    loader = DataLoader(ds, batch_size=6, num_workers=2, multiprocessing_context=context, persistent_workers=True)
    for _ in range(2):  # persistent workers serve a second epoch
        got = torch.cat([x for x, _ in loader])
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=0)
    threads = [t for t, in_worker in DataLoader(_ThreadProbe(), batch_size=None, num_workers=2) if in_worker]
    assert threads and all(t == 1 for t in threads)  # no oversubscription in workers


def test_dataset_pickles_weights_not_images(gen):
    ds = SyntheticDataset(gen, size=10_000, block_size=512)
    empty = len(pickle.dumps(ds))
    _ = [ds[i] for i in range(0, 10_000, 600)]  # fills the cache
    assert len(pickle.dumps(ds)) == empty
    weights = sum(p.numel() * 4 for p in gen.parameters())
    assert empty < weights + 10_000 * 8 + 200_000


def test_no_cuda_initialised_at_import():
    code = ("import torch, genaug, genaug.data, genaug.transforms, genaug.train; "
            "print(torch.cuda.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_ten_million_items_store_no_images(gen):
    ds = SyntheticDataset(gen, size=10_000_000, block_size=256)
    assert len(ds) == 10_000_000 and len(ds._cache) == 0
    assert ds._labels.nbytes <= 20_000_000  # int16 labels, no images
    img, _ = ds[9_999_999]
    assert img.shape == (1, 28, 28) and len(ds._cache) == 0  # decoded on demand, nothing kept


@pytest.mark.parametrize("family", ["vae", "labelled", "mixture"])
def test_batched_access_equals_single_access(family):
    gen = tiny_generator(family)
    ds = SyntheticDataset(gen, size=40, block_size=8, seed=5)
    order = [31, 2, 17, 2, -1]
    batch = ds.__getitems__(order)
    for (x, y), i in zip(batch, order, strict=True):
        assert y == ds[i][1]
        torch.testing.assert_close(x, ds[i][0], atol=1e-6, rtol=0)
    mixed = MixedDataset(MNISTSample(train=False), gen, synthetic_fraction=0.5)
    items = mixed.__getitems__([0, 600, 3, 999])
    assert items[0][1] == mixed[0][1] and items[1][1] == mixed[600][1]
    torch.testing.assert_close(items[1][0], mixed[600][0], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(synthetic_fraction=1.5), r"synthetic_fraction must be in \[0.0, 1.0\), got 1.5"),
        (dict(synthetic_fraction=float("nan")), "synthetic_fraction must be a finite number, got nan"),
        (dict(balance="most"), "balance must be 'uniform', 'match'"),
        (dict(balance={"eleven": 3}), "unknown class 'eleven'"),
        (dict(), "exactly one of synthetic_fraction or balance"),
    ],
)
def test_mixed_bad_input(gen, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MixedDataset(MNISTSample(train=False), gen, **kwargs)


def test_mixed_refuses_other_shapes_and_empty(gen):
    rgb = tiny_generator("dcgan").__class__.from_config(
        "dcgan", tiny_generator("dcgan").config.replace(image_shape=(3, 32, 32)))
    with pytest.raises(ValueError, match=r"real images of shape \(3, 32, 32\) \(the generator's\), got \(1, 28, 28\)"):
        MixedDataset(MNISTSample(train=False), rgb, synthetic_fraction=0.5)
    with pytest.raises(ValueError, match="empty"):
        MixedDataset(torch.utils.data.Subset(MNISTSample(), []), gen, balance="uniform")


def test_synthetic_bad_input(gen):
    with pytest.raises(ValueError, match=r"unknown class names \['ten'\]"):
        SyntheticDataset(gen, size=5, classes=["ten"])
    with pytest.raises(ValueError, match="class_weights must have 10 entries"):
        SyntheticDataset(gen, size=5, class_weights=[1, 2])
    with pytest.raises(ValueError, match="output must be one of"):
        SyntheticDataset(gen, size=5, output="numpy")
    with pytest.raises(ValueError, match="num_classes=0"):
        SyntheticDataset(tiny_generator("gan", 0), size=5)


def test_balance_tops_up_minority_classes(gen):
    real = MNISTSample(train=False)
    keep = [i for i, t in enumerate(real.targets.tolist()) if t != 3 or i % 10 == 0]
    sub = torch.utils.data.Subset(real, keep)
    sub.targets = real.targets[keep]
    sub.classes = real.classes
    mixed = MixedDataset(sub, gen, balance="uniform", output="pil")
    counts = torch.bincount(mixed.targets, minlength=10).tolist()
    assert counts == [50] * 10
    n3 = int((sub.targets == 3).sum())
    assert 0 < n3 < 50 and int(mixed.is_synthetic.sum()) == 50 - n3
    explicit = MixedDataset(sub, gen, balance={"3": 7, 1: 2})
    assert explicit.synthetic_counts.tolist() == [0, 2, 0, 7, 0, 0, 0, 0, 0, 0]
    assert torch.bincount(MixedDataset(sub, gen, balance="match").targets, minlength=10).tolist()[3] == 2 * n3


def test_synthetic_pool_is_deterministic_per_seed_and_epoch():
    import time

    from genaug.data import SyntheticDataset, SyntheticPool
    from genaug.data.synthetic import epoch_seed

    gen = tiny_generator("vae")
    a = SyntheticPool(gen, per_class=3, seed=5, chunk=7)
    time.sleep(0.05)  # epoch 1's pool is being made in the background meanwhile
    b = SyntheticPool(gen, per_class=3, seed=5, chunk=7)
    for epoch in (0, 1, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        ref = SyntheticDataset(gen, per_class=3, seed=epoch_seed(5, epoch))
        idx = list(range(len(ref)))
        for (xa, ya), (xb, yb), (xr, yr) in zip(a.__getitems__(idx), b.__getitems__(idx), ref.__getitems__(idx),
                                                strict=True):
            # Exact between pools; within float rounding of the on-demand dataset, which decodes other batches.
            assert torch.equal(xa, xb) and (xa - xr).abs().max() <= 1e-6 and ya == yb == yr
        assert torch.equal(a.targets, ref.targets)
    a.set_epoch(0)
    first = torch.stack([x for x, _ in a.__getitems__(idx)])
    a.set_epoch(1)
    assert not torch.equal(first, torch.stack([x for x, _ in a.__getitems__(idx)]))  # a fresh pool each epoch
    assert sorted(a.targets.tolist()) == sorted(ref.targets.tolist())  # with the same class counts
    with pytest.raises(ValueError, match="holds tensors"):
        SyntheticPool(gen, per_class=3, output="pil")
    import pickle

    copy = pickle.loads(pickle.dumps(a))  # the current pool travels
    assert torch.equal(copy[0][0], a[0][0])
    with a:  # close() stops the background thread; the current pool stays readable
        pass
    assert a._executor is None and torch.equal(a[0][0], copy[0][0])
    with pytest.raises(RuntimeError, match="closed"):
        a.set_epoch(2)
    copy.set_epoch(2)  # the copy is open
    with pytest.raises(IndexError, match="out of range"):
        a[len(a)]


def test_mixed_dataset_pool_mode_follows_set_epoch():
    from genaug.data import MixedDataset, SyntheticPool

    gen = tiny_generator("vae")
    real = torch.utils.data.TensorDataset(torch.rand(20, 1, 28, 28), torch.arange(20) % 10)
    real.classes = gen.classes
    mixed = MixedDataset(real, gen, synthetic_fraction=0.5, seed=2, pool=True)
    plain = MixedDataset(real, gen, synthetic_fraction=0.5, seed=2)
    assert isinstance(mixed.synthetic, SyntheticPool) and len(mixed) == len(plain) == 40
    mixed.set_epoch(2)
    again = MixedDataset(real, gen, synthetic_fraction=0.5, seed=2, pool=True)
    again.set_epoch(2)
    for i in range(40):
        assert torch.equal(mixed[i][0], again[i][0]) and mixed[i][1] == again[i][1]
    assert torch.equal(mixed[3][0], plain[3][0])  # real items are untouched
    mixed.close()
    assert mixed.synthetic._executor is None
    with pytest.raises(TypeError, match="pool must be a bool"):
        MixedDataset(real, gen, synthetic_fraction=0.5, pool="yes")
