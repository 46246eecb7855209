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

from genaug.data.hdf5 import HDF5Dataset
from genaug.data.real import MNISTSample, as_tensors, load_mnist

__all__ = ["labelled_tensors", "resolve_data", "resolve_test_data"]


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
    raise ValueError(f"--data must be 'mnist', 'sample' or an .h5 file written by genaug export, got {name!r}")


def resolve_test_data(name: str, root: str | os.PathLike[str] | None = None) -> Any:
    """The test split that goes with ``name``: MNIST's test set for ``"mnist"``, else the bundled sample's."""
    if name == "mnist":
        return load_mnist(root, train=False)
    return MNISTSample(train=False)


def labelled_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels of what :func:`resolve_data` returns."""
    if isinstance(data, tuple):
        return data
    return as_tensors(data)
