"""Training batches: images kept in device memory, or streamed from a dataset through a DataLoader.

Both walk the same order (a permutation of (seed, epoch), sharded by rank) from any batch of an
epoch, and give the same float images in [0, 1]: a run resumes exactly with either.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from genaug.data.labelled import (
    check_dataset,
    dataset_classes,
    dataset_labels,
    image_tensor,
    in_memory_images,
    item_label,
    item_name,
    labelled_images,
)
from genaug.data.real import float_images


def _check_labels(labels: Any, n: int) -> torch.Tensor:
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels)
    if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        what = f"dtype {labels.dtype}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"expected integer labels (a tensor or array), got {what}")
    if labels.shape != (n,):
        raise ValueError(f"expected {n} labels (one per image), got labels of shape {tuple(labels.shape)}")
    labels = labels.long()
    if n and int(labels.min()) < 0:
        raise ValueError(f"expected labels >= 0, got minimum {int(labels.min())}")
    return labels


def _class_names(classes: list[str] | None, labels: torch.Tensor) -> list[str]:
    num_classes = int(labels.max()) + 1
    classes = [str(i) for i in range(num_classes)] if classes is None else list(classes)
    if len(classes) < num_classes:
        raise ValueError(f"labels go up to {num_classes - 1} but only {len(classes)} classes are named")
    return classes


class InMemoryBatches:
    """All images as float32 in [0, 1] on the training device."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str], device: torch.device):
        self.images, self.labels = images.to(device), labels.to(device)
        self.classes, self.device = classes, device
        self.image_shape = tuple(images.shape[1:])

    def __len__(self) -> int:
        return len(self.labels)

    def epoch(self, order: torch.Tensor, batch_size: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = order.to(self.device)
        for b in range(start, len(order) // batch_size):
            idx = order[b * batch_size : (b + 1) * batch_size]
            yield self.images[idx], self.labels[idx]

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx.to(self.device)
        return self.images[idx], self.labels[idx]


class _Indexed(Dataset):
    """Items as (index, uint8 image (C, H, W), label), checked against one shape."""

    def __init__(self, dataset: Any, shape: tuple[int, ...]) -> None:
        self.dataset, self.shape = dataset, shape

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, int]:
        img, label = self.dataset[i]
        t = image_tensor(img, i)
        if tuple(t.shape) != self.shape:
            raise ValueError(f"expected images of one shape {self.shape} (C, H, W), as the first item; "
                             f"{item_name(self.dataset, i)} is {tuple(t.shape)}")
        return i, t, item_label(label, i)


def _collate(items: list[tuple[int, torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([t for _, t, _ in items]), torch.tensor([y for _, _, y in items], dtype=torch.long)


class StreamedBatches:
    """Images read from the dataset batch by batch (DataLoader workers, pinned memory on CUDA),
    for data larger than memory. Only the labels are held."""

    def __init__(self, dataset: Any, labels: torch.Tensor, classes: list[str], device: torch.device,
                 *, num_workers: int, shape: tuple[int, ...]) -> None:
        self.dataset, self.labels, self.classes, self.device = _Indexed(dataset, shape), labels, classes, device
        self.num_workers, self.image_shape = num_workers, shape

    def __len__(self) -> int:
        return len(self.labels)

    def _loader(self, batches: list[list[int]]) -> DataLoader:
        return DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers, collate_fn=_collate,
                          pin_memory=self.device.type == "cuda")

    def epoch(self, order: torch.Tensor, batch_size: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = order.tolist()
        batches = [order[b * batch_size : (b + 1) * batch_size] for b in range(start, len(order) // batch_size)]
        for x, y in self._loader(batches):
            yield x.to(self.device, non_blocking=True).float().div_(255), y.to(self.device, non_blocking=True)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = _collate([self.dataset[int(i)] for i in idx])
        return x.to(self.device).float().div_(255), y.to(self.device)


def training_batches(data: Any, *, device: torch.device, mode: str = "auto", cache_mb: int = 1024,
                     num_workers: int = 2) -> InMemoryBatches | StreamedBatches:
    """The batches of ``data`` (a labelled dataset or an ``(images, labels)`` pair).

    ``mode="auto"`` keeps images in memory when they fit in ``cache_mb`` MiB as float32 and
    streams them otherwise; ``"memory"`` and ``"stream"`` force one.
    """
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = data
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        images = float_images(images)
        labels = _check_labels(labels, images.shape[0])
        return InMemoryBatches(images, labels, _class_names(None, labels), device)
    check_dataset(data)
    classes = dataset_classes(data)
    fast = in_memory_images(data) if mode != "stream" else None
    shape = tuple(fast.shape[1:]) if fast is not None else tuple(image_tensor(data[0][0], 0).shape)
    nbytes = len(data) * int(np.prod(shape)) * 4  # kept as float32
    stream = mode == "stream" or (mode == "auto" and nbytes > cache_mb * 2**20)
    if stream:
        labels = _check_labels(dataset_labels(data), len(data))
        return StreamedBatches(data, labels, _class_names(classes, labels), device, num_workers=num_workers,
                               shape=shape)
    images, labels = (fast, dataset_labels(data)) if fast is not None else labelled_images(data)
    labels = _check_labels(labels, images.shape[0])
    return InMemoryBatches(float_images(images), labels, _class_names(classes, labels), device)
