"""Real data sources: full MNIST through torchvision, and a small bundled MNIST sample."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import MNIST, VisionDataset

MNIST_CLASSES = [str(i) for i in range(10)]
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def apply_transforms(img: Any, target: Any, transform: Callable | None,
                     target_transform: Callable | None) -> tuple[Any, Any]:
    """Apply a dataset's ``transform`` and ``target_transform``, as torchvision datasets do."""
    if transform is not None:
        img = transform(img)
    if target_transform is not None:
        target = target_transform(target)
    return img, target


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root`` if given, else the ``GENAUG_DATA`` environment variable."""
    if root is None:
        root = os.environ.get("GENAUG_DATA")
    if root is None:
        raise ValueError(
            "no data root: pass root=... (CLI: --data-root DIR) or set GENAUG_DATA to the folder "
            "that holds MNIST/raw"
        )
    return Path(root)


def full_mnist_available(root: str | os.PathLike[str] | None = None) -> bool:
    try:
        raw = data_root(root) / "MNIST" / "raw"
    except ValueError:
        return False
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in MNIST_FILES)


def load_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    train: bool = True,
    download: bool = False,
    transform: Callable | None = None,
    target_transform: Callable | None = None,
) -> MNIST:
    """Full MNIST via ``torchvision.datasets.MNIST``; downloads only if ``download=True``.

    Example:
        >>> ds = load_mnist("data", train=True)  # doctest: +SKIP
    """
    root_path = data_root(root)
    if not download and not full_mnist_available(root_path):
        raise FileNotFoundError(
            f"MNIST not found: expected the files {list(MNIST_FILES)} in {root_path / 'MNIST' / 'raw'} "
            "(torchvision's layout); pass download=True (CLI: --download) to fetch them"
        )
    return MNIST(
        str(root_path), train=train, download=download,
        transform=transform, target_transform=target_transform,
    )


class MNISTSample(VisionDataset):
    """A small real MNIST sample shipped inside genaug (100 train / 50 test images per class).

    Items are ``(PIL image, int label)`` like ``torchvision.datasets.MNIST``. MNIST is by
    Yann LeCun and Corinna Cortes, CC BY-SA 3.0.

    Example:
        >>> ds = MNISTSample(train=True)
        >>> len(ds), ds.classes[:3]
        (1000, ['0', '1', '2'])
    """

    classes = MNIST_CLASSES

    def __init__(
        self,
        *,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        super().__init__(root="", transform=transform, target_transform=target_transform)
        self.train = train
        split = "train" if train else "test"
        with resources.files("genaug.data").joinpath("assets/mnist_sample.npz").open("rb") as f:
            arrays = np.load(f)
            self.data = torch.from_numpy(arrays[f"{split}_images"].copy())
            self.targets = torch.from_numpy(arrays[f"{split}_labels"].copy())

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = Image.fromarray(self.data[index].numpy(), mode="L")
        target = int(self.targets[index])
        return apply_transforms(img, target, self.transform, self.target_transform)

    def extra_repr(self) -> str:
        return f"Split: {'Train' if self.train else 'Test'}"


def as_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels of a labelled dataset: straight from an in-memory
    ``.data`` (MNIST- or CIFAR-style) when it has no transform, else one pass over its items."""
    from genaug.data.labelled import labelled_images

    if isinstance(dataset, tuple):
        raise TypeError("expected a dataset, got a tuple; an (images, labels) pair is already tensors")
    return labelled_images(dataset)


def float_images(images: Any) -> torch.Tensor:
    """Float32 images (N > 0, C, H, W) in [0, 1] from uint8 images or float ones already in [0, 1]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            f"expected images as a tensor of shape (N, C, H, W) with N > 0, got "
            f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
        )
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or float images, got dtype {images.dtype}")
    lo, hi = float(images.min()), float(images.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi > 1:
        raise ValueError(f"expected float images in [0, 1], got values in [{lo}, {hi}]")
    return images.float()
