"""Labels, class names and images of any labelled dataset the user already holds.

Labels are read cheaply where the dataset tells them: ``.targets`` (torchvision datasets, lists
or arrays), ``.samples`` (``ImageFolder``), a ``Subset``'s indices into its parent, the parts of a
``ConcatDataset``, the second tensor of a ``TensorDataset``. Otherwise one pass reads them.

Example:
    >>> from torch.utils.data import Subset
    >>> from genaug.data import MNISTSample
    >>> from genaug.data.labelled import dataset_labels
    >>> sample = MNISTSample()
    >>> bool((dataset_labels(Subset(sample, [0, 150, 999])) == sample.targets[[0, 150, 999]]).all())
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Subset, TensorDataset

__all__ = [
    "check_dataset", "dataset_classes", "dataset_labels", "image_tensor", "in_memory_images", "item_label",
    "item_name", "labelled_images",
]


def _int_labels(values: Any, what: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(np.asarray(values) if isinstance(values, (list, tuple)) else values)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{what} must be int labels, got {type(values).__name__}") from None
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool or t.ndim != 1:
        raise TypeError(f"{what} must be 1-D int labels, got dtype {t.dtype} and shape {tuple(t.shape)}")
    return t.long()


def item_label(value: Any, index: int) -> int:
    """An item's label as an int; anything but an integer (a float, a bool, a one-hot vector) is refused."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_floating_point():
        return int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"item {index}: expected an (image, int label) pair, got a label of type {type(value).__name__}")


def dataset_labels(dataset: Any) -> torch.Tensor:
    """The int64 class index of every item of ``dataset``, as the dataset stores it (a
    ``target_transform`` may make anything of it; class balance needs the index)."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    if isinstance(dataset, ConcatDataset):
        return torch.cat([dataset_labels(d) for d in dataset.datasets])
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return _int_labels(dataset.tensors[1], "the TensorDataset's second tensor")
    labels = None
    if getattr(dataset, "targets", None) is not None:
        labels = _int_labels(dataset.targets, f"{type(dataset).__name__}.targets")
    elif getattr(dataset, "samples", None) is not None:  # DatasetFolder / ImageFolder: (path, class index)
        labels = _int_labels([s[1] for s in dataset.samples], f"{type(dataset).__name__}.samples")
    if labels is None:  # one pass over the items
        return torch.tensor([item_label(dataset[i][1], i) for i in range(len(dataset))], dtype=torch.long)
    if len(labels) != len(dataset):
        raise ValueError(f"{type(dataset).__name__} has {len(dataset)} items but {len(labels)} labels")
    return labels


def dataset_classes(dataset: Any) -> list[str] | None:
    """Class names of ``dataset`` (``.classes``, a Subset's parent's, the common ones of a
    ConcatDataset), or None where it names none."""
    if isinstance(dataset, Subset):
        return dataset_classes(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        names = [dataset_classes(d) for d in dataset.datasets]
        return names[0] if names and all(n == names[0] for n in names) else None
    classes = getattr(dataset, "classes", None)
    return [str(c) for c in classes] if classes is not None else None


def image_tensor(img: Any, index: int | None = None) -> torch.Tensor:
    """One image (PIL image, HWC/HW array, CHW/HW tensor) as a uint8 tensor (C, H, W).

    Float images must lie in [0, 1]; other modes and dtypes are refused, naming the item.
    """
    where = f"item {index}: " if index is not None else ""
    if isinstance(img, Image.Image):
        if img.mode not in ("L", "RGB"):
            raise ValueError(f"{where}expected a grayscale (L) or RGB image, got mode {img.mode!r}")
        arr = np.asarray(img)
        t = torch.from_numpy(arr.copy())
        return t[None] if t.ndim == 2 else t.permute(2, 0, 1).contiguous()
    if isinstance(img, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(img))
        if t.ndim == 3 and t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
            t = t.permute(2, 0, 1)  # HWC, as numpy images come
    elif isinstance(img, torch.Tensor):
        t = img.detach().cpu()
    else:
        raise TypeError(f"{where}expected a PIL image, a numpy array or a tensor, got {type(img).__name__}")
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"{where}expected an image of 1 or 3 channels, (C, H, W) or (H, W), got shape "
                         f"{tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.contiguous()
    if t.is_floating_point():
        lo, hi = float(t.min()), float(t.max())
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(f"{where}expected float images in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
        return t.mul(255).round_().to(torch.uint8).contiguous()
    raise TypeError(f"{where}expected uint8 or float images, got dtype {t.dtype}")


def item_name(dataset: Any, index: int) -> str:
    """The file behind an item where the dataset knows it (ImageFolder's ``.samples``), else its index."""
    while isinstance(dataset, Subset):
        index, dataset = int(dataset.indices[index]), dataset.dataset
    samples = getattr(dataset, "samples", None)
    return f"{samples[index][0]}" if samples is not None else f"item {index}"


def in_memory_images(dataset: Any) -> torch.Tensor | None:
    """uint8 (N, C, H, W) straight from an in-memory ``.data`` (MNIST: (N, H, W) tensor; CIFAR:
    (N, H, W, C) uint8 array), when the dataset has no transform that would change its images."""
    if isinstance(dataset, Subset):
        parent = in_memory_images(dataset.dataset)
        return None if parent is None else parent[torch.as_tensor(list(dataset.indices), dtype=torch.long)]
    if getattr(dataset, "transform", None) is not None or getattr(dataset, "transforms", None) is not None:
        return None
    data = dataset.tensors[0] if isinstance(dataset, TensorDataset) else getattr(dataset, "data", None)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8:
        data = torch.from_numpy(data)
        if data.ndim == 4 and data.shape[-1] in (1, 3):
            data = data.permute(0, 3, 1, 2)
    if not isinstance(data, torch.Tensor) or data.dtype != torch.uint8 or len(data) != len(dataset):
        return None
    if data.ndim == 3:
        data = data[:, None]
    return data.contiguous() if data.ndim == 4 and data.shape[1] in (1, 3) else None


def check_dataset(data: Any) -> None:
    """Refuse what is not a non-empty map-style dataset (an ``(images, labels)`` pair is checked apart)."""
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError(f"expected a dataset of (image, label) items or an (images, labels) pair, "
                        f"got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("expected a non-empty dataset, got 0 items")


def labelled_images(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, C, H, W) and int64 labels of a dataset or an ``(images, labels)`` pair.

    A dataset's items are read in one pass unless its images sit in memory (``.data``); all
    images must share one shape, else the first item of each shape is named.
    """
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = data
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"expected images as a tensor or array, got {type(images).__name__}")
        return images, _int_labels(labels, "labels")
    check_dataset(data)
    images = in_memory_images(data)
    if images is not None:
        return images, dataset_labels(data)
    out, labels, first_of_shape = [], [], {}
    for i in range(len(data)):
        img, label = data[i]
        t = image_tensor(img, i)
        first_of_shape.setdefault(tuple(t.shape), i)
        out.append(t)
        labels.append(item_label(label, i))
    if len(first_of_shape) > 1:
        examples = ", ".join(f"{item_name(data, i)} is {shape}" for shape, i in first_of_shape.items())
        raise ValueError(f"expected images of one shape and mode, got {len(first_of_shape)} shapes (C, H, W): "
                         f"{examples}")
    return torch.stack(out), torch.tensor(labels, dtype=torch.long)
