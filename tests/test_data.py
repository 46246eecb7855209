from __future__ import annotations

import pytest
import torch
from PIL import Image

from genaug.data import MNIST_FILES, MNISTSample, as_tensors, load_mnist


@pytest.mark.parametrize(("train", "n"), [(True, 1000), (False, 500)])
def test_bundled_sample_is_balanced_real_mnist(train, n):
    ds = MNISTSample(train=train)
    assert len(ds) == n
    assert torch.bincount(ds.targets).tolist() == [n // 10] * 10
    img, label = ds[0]
    assert isinstance(img, Image.Image) and img.size == (28, 28) and isinstance(label, int)
    x, y = as_tensors(ds)
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.uint8 and x.float().mean() > 10
    assert "Split: " + ("Train" if train else "Test") in repr(ds)


def test_transforms_are_applied():
    ds = MNISTSample(transform=lambda im: torch.tensor(im.size), target_transform=lambda t: t + 100)
    img, label = ds[3]
    assert img.tolist() == [28, 28] and label >= 100


def test_missing_mnist_names_the_four_files_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    msg = str(info.value)
    assert all(f in msg for f in MNIST_FILES) and str(tmp_path / "MNIST" / "raw") in msg


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_DATA", str(tmp_path / "env-root"))
    with pytest.raises(FileNotFoundError, match="env-root"):
        load_mnist()
    monkeypatch.delenv("GENAUG_DATA")
    with pytest.raises(ValueError, match="GENAUG_DATA"):
        load_mnist()


@pytest.mark.full_mnist
def test_full_mnist_loads(mnist_root):
    train, test = load_mnist(mnist_root, train=True), load_mnist(mnist_root, train=False)
    assert (len(train), len(test)) == (60000, 10000)
    # The bundled sample is drawn from the real training set.
    sample = MNISTSample()
    from importlib import resources

    import numpy as np

    with resources.files("genaug.data").joinpath("assets/mnist_sample.npz").open("rb") as f:
        idx = torch.from_numpy(np.load(f)["train_source_index"])
    assert torch.equal(train.data[idx], sample.data) and torch.equal(train.targets[idx], sample.targets)
