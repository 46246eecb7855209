"""Resolve what ``--data`` names into a labelled dataset (the CLI's data sources live here).

Example:
    >>> from genaug.data.sources import resolve_data
    >>> data, description = resolve_data("sample")
    >>> description
    'genaug bundled MNIST sample (1000 train images)'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset, TensorDataset

from genaug.data.hdf5 import HDF5Dataset
from genaug.data.labelled import labelled_images
from genaug.data.real import MNISTSample, load_mnist

__all__ = ["labelled_tensors", "resolve_data", "resolve_splits", "resolve_test_data"]


def resolve_data(name: str, root: str | os.PathLike[str] | None = None, *, download: bool = False,
                 train: bool = True) -> tuple[Any, str]:
    """``(dataset or (images, labels) pair, description)`` for ``name``: ``"sample"`` (bundled),
    ``"mnist"`` (torchvision's files under ``root``; downloads only with ``download=True``) or a
    ``.h5`` file written by ``genaug export`` (its images and labels)."""
    if name == "sample":
        split = "train" if train else "test"
        ds = MNISTSample(train=train)
        return ds, f"genaug bundled MNIST sample ({len(ds)} {split} images)"
    if name == "mnist":
        ds = load_mnist(root, train=train, download=download)
        return ds, f"MNIST {'train' if train else 'test'} ({len(ds)} images)"
    path = Path(name)
    if path.suffix in (".h5", ".hdf5") and path.is_file():
        return HDF5Dataset(path).tensors(), f"HDF5 file {path.name}"
    if path.suffix == ".npz" and path.is_file():
        return _npz(path), f"npz file {path.name}"
    if path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        return _image_folder(path), f"image folder {path.name}"
    raise ValueError(
        "--data must be 'mnist', 'sample', an .h5 file written by genaug export, an .npz with 'images' and "
        f"'labels', or a folder of class sub-folders, got {name!r}")


def _npz(path: Path) -> TensorDataset:
    """An .npz of ``images`` (uint8 (N, H, W), (N, H, W, C) or (N, C, H, W)) and ``labels``, with
    optional ``classes`` (names), as a TensorDataset of uint8 (N, C, H, W) images."""
    import numpy as np

    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    with arrays:
        missing = [k for k in ("images", "labels") if k not in arrays.files]
        if missing:
            raise ValueError(f"{path}: expected arrays 'images' and 'labels', got {sorted(arrays.files)}")
        images, labels = arrays["images"], arrays["labels"]
        classes = [str(c) for c in arrays["classes"].tolist()] if "classes" in arrays.files else None
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 images, got dtype {images.dtype}")
    x = torch.from_numpy(images)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{path}: expected images (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 channels, "
                         f"got shape {tuple(images.shape)}")
    if labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: expected {len(x)} integer labels, got dtype {labels.dtype} and shape {labels.shape}")
    y = torch.from_numpy(labels.astype(np.int64))
    if len(y) and int(y.min()) < 0:
        raise ValueError(f"{path}: expected labels >= 0, got minimum {int(y.min())}")
    ds = TensorDataset(x.contiguous(), y)
    ds.classes = classes
    ds.targets = y
    return ds


def open_image(path: str) -> Any:
    """An image file as PIL keeps it, grayscale (L) or RGB; other modes (palette, alpha, 16-bit)
    are refused, naming the file (torchvision's default loader would turn everything into RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    if img.mode not in ("L", "RGB"):
        raise ValueError(f"{path}: expected a grayscale (L) or RGB image, got mode {img.mode!r}")
    return img


def _image_folder(path: Path) -> Any:
    """torchvision's ImageFolder over class sub-folders, refusing empty classes."""
    from torchvision.datasets import ImageFolder

    empty = sorted(d.name for d in path.iterdir() if d.is_dir() and not any(f.is_file() for f in d.rglob("*")))
    if empty:
        raise ValueError(f"{path}: class folder(s) {empty} hold no files; expected images in every class folder")
    try:
        ds = ImageFolder(str(path), loader=open_image)
    except (FileNotFoundError, RuntimeError) as err:
        raise ValueError(f"{path}: {err}") from None
    if len(ds.classes) < 2:
        raise ValueError(f"{path}: expected two or more class folders, got {ds.classes}")
    return ds


def resolve_test_data(name: str, root: str | os.PathLike[str] | None = None) -> Any:
    """The test split that goes with ``name``: MNIST's for ``"mnist"``, the bundled sample's for
    ``"sample"``; other data has none (give a test set or a validation split: :func:`resolve_splits`)."""
    if name == "mnist":
        return load_mnist(root, train=False)
    if name == "sample":
        return MNISTSample(train=False)
    raise ValueError(f"--data {name} has no test split of its own; give --test-data (a test set in any --data "
                     "form) or --val-split F (hold out a fraction F of --data)")


def resolve_splits(name: str, root: str | os.PathLike[str] | None = None, *, test: str | None = None,
                   val_split: float | None = None, seed: int = 0, download: bool = False) -> tuple[Any, Any, str]:
    """``(train, test, description)``: the data ``name`` resolves to and the set to measure on, which
    is ``test`` (resolved the same way), a seeded ``val_split`` fraction held out of the data, or the
    data's own test split (MNIST, the bundled sample).

    Example:
        >>> train, test, _ = resolve_splits("sample", val_split=0.2)
        >>> len(train), len(test)
        (800, 200)
    """
    if test is not None and val_split is not None:
        raise ValueError("give --test-data or --val-split, not both")
    data, description = resolve_data(name, root, download=download)
    if test is not None:
        test_set, _ = resolve_data(test, root, download=download, train=False)
        return data, test_set, description
    if val_split is None:
        return data, resolve_test_data(name, root), description
    if not 0 < val_split < 1:
        raise ValueError(f"--val-split must be in (0, 1), got {val_split}")
    if isinstance(data, tuple):
        data = TensorDataset(*data)
    n = len(data)
    held = round(n * val_split)
    if not 0 < held < n:
        raise ValueError(f"--val-split {val_split} of {n} items leaves an empty split")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    train, held_out = Subset(data, perm[held:]), Subset(data, perm[:held])
    return train, held_out, f"{description}, {n - held} after holding out {held} (--val-split {val_split}, seed {seed})"


def labelled_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels of what :func:`resolve_data` returns (any labelled
    dataset, or an ``(images, labels)`` pair)."""
    return labelled_images(data)
