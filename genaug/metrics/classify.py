"""A fixed, small classifier recipe: used by examples, judges and train-on-synthetic tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from genaug._validation import check_float, check_int
from genaug.data.real import float_images
from genaug.device import get_device
from genaug.models import Classifier, ClassifierConfig


def train_classifier(
    dataset: Dataset,
    *,
    model: torch.nn.Module | None = None,
    num_classes: int = 10,
    image_shape: tuple[int, int, int] = (1, 28, 28),
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    num_workers: int = 0,
    sampler: Sampler | None = None,
    collate_fn: Callable | None = None,
    device: str = "auto",
    progress: bool = False,
) -> Classifier:
    """Train a classifier with Adam on ``(float image in [0, 1], label)`` items.

    ``model`` defaults to a fresh :class:`~genaug.models.Classifier`; pass one (e.g. from
    :func:`genaug.pretrain.build_classifier`) to fine-tune it. Frozen parameters stay frozen.
    ``sampler`` replaces the shuffled order (e.g. a ``WeightedRandomSampler`` for class-balanced
    batches; an epoch is then the sampler's length) and ``collate_fn`` is the DataLoader's (e.g.
    :meth:`genaug.SyntheticBatchMix.collate`).

    Example:
        >>> clf = train_classifier(mixed_dataset, epochs=2)  # doctest: +SKIP
    """
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    if sampler is not None and not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be a torch.utils.data.Sampler, got {type(sampler).__name__}")
    if collate_fn is not None and not callable(collate_fn):
        raise TypeError(f"collate_fn must be callable, got {type(collate_fn).__name__}")
    dev = get_device(device)
    torch.manual_seed(seed)
    if model is None:
        model = Classifier(ClassifierConfig(image_shape=image_shape, num_classes=num_classes))
    model = model.to(dev)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    n = len(sampler) if sampler is not None else len(dataset)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                        collate_fn=collate_fn, drop_last=n > batch_size, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed), persistent_workers=num_workers > 0)
    model.train()
    for epoch in range(epochs):
        for x, y in tqdm(loader, desc=f"classifier epoch {epoch + 1}/{epochs}", disable=not progress, leave=False):
            x, y = x.to(dev, non_blocking=True).float(), y.to(dev, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None, *, degrees: float = 10.0,
                  shift: float = 2.0, scale: float = 0.1) -> torch.Tensor:
    """A random affine transform per image of a (N, C, H, W) float batch, zeros outside.

    Rotation up to ±``degrees``, shift up to ±``shift`` pixels and scale 1 ± ``scale``, each drawn
    per image from ``generator``. torchvision's ``v2.RandomAffine`` draws
    one transform per call, so a batch would share it; this draws N in one ``grid_sample``.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"random_affine expects a (N, C, H, W) float batch, got {tuple(x.shape)} {x.dtype}")
    n, _, h, w = x.shape
    # Drawn where the generator lives (a CPU generator serves a CUDA batch too).
    u = torch.rand(n, 4, generator=generator, device=generator.device if generator else x.device)
    u = u.to(x.device) * 2 - 1
    angle, zoom = u[:, 0] * math.radians(degrees), 1 + scale * u[:, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid works in [-1, 1] coordinates: a shift of s pixels is 2 s / size.
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * 2 * shift / w], 1),
                         torch.stack([sin, cos, u[:, 3] * 2 * shift / h], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def random_cutout(x: torch.Tensor, generator: torch.Generator | None = None, *, size: int = 10) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square at a random place in each image of a (N, C, H, W) batch.

    Cutout (DeVries and Taylor, 2017), with one centre per image drawn from ``generator``;
    squares at the border are clipped. torchvision's ``v2.RandomErasing`` would erase the same
    place in every image of a batch.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"random_cutout expects a (N, C, H, W) float batch, got {tuple(x.shape)} {x.dtype}")
    check_int("size", size, minimum=1)
    n, _, h, w = x.shape
    u = torch.rand(n, 2, generator=generator, device=generator.device if generator else x.device).to(x.device)
    cy, cx = (u[:, 0] * h).long(), (u[:, 1] * w).long()
    rows = torch.arange(h, device=x.device)[None, :] - (cy - size // 2)[:, None]
    cols = torch.arange(w, device=x.device)[None, :] - (cx - size // 2)[:, None]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return x.masked_fill(inside[:, None], 0.0)


def strong_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The strong view of consistency training: a wider :func:`random_affine` (±25°, ±4 px,
    scale 0.8-1.2) and a 10-pixel :func:`random_cutout`; scaled to the image size."""
    h = x.shape[-2]
    return random_cutout(random_affine(x, generator, degrees=25.0, shift=4.0 * h / 28, scale=0.2), generator,
                         size=max(1, round(10 * h / 28)))


def train_augmented_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int,
    num_classes: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    weights: torch.Tensor | None = None,
    mix: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    device: str = "auto",
    progress: bool = False,
) -> Classifier:
    """Train a fresh :class:`~genaug.models.Classifier` for ``steps`` steps with augmentation.

    The recipe of ``benchmarks/augmentation.py`` (a strong real-only baseline): Adam at ``lr``,
    decayed linearly to 0, and :func:`random_affine` applied to every batch.

    Args:
        images: (N, C, H, W) uint8, or float in [0, 1].
        labels: (N,) class indices.
        steps: optimiser steps of ``batch_size`` images; the order is a fresh permutation per
            pass over the images (drawn by ``seed``), or ``weights``.
        num_classes: default ``labels.max() + 1``.
        weights: per-image sampling weights (e.g. class-balanced resampling), drawn with
            replacement; default: uniform passes over the images.
        mix: called as ``mix(images, labels)`` on each batch before the augmentation, e.g. a
            :class:`genaug.SyntheticBatchMix`.

    Example:
        >>> clf = train_augmented_classifier(x, y, steps=3000)  # doctest: +SKIP
    """
    check_int("steps", steps, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_float("lr", lr, low=0.0, low_open=True)
    x = float_images(images)
    labels = torch.as_tensor(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be ({len(images)},) to match the images, got {tuple(labels.shape)}")
    if weights is not None and torch.as_tensor(weights).shape != (len(images),):
        raise ValueError(f"weights must be ({len(images)},), got {tuple(torch.as_tensor(weights).shape)}")
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    check_int("num_classes", classes, minimum=2)
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise ValueError(f"labels must lie in [0, {classes - 1}], got [{int(labels.min())}, {int(labels.max())}]")
    dev = get_device(device)
    torch.manual_seed(seed)
    model = Classifier(ClassifierConfig(image_shape=tuple(images.shape[1:]), num_classes=classes)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    g = torch.Generator().manual_seed(seed)
    y = labels.long()
    order = torch.empty(0, dtype=torch.long)
    model.train()
    for _ in tqdm(range(steps), desc="classifier", disable=not progress, leave=False):
        if weights is not None:
            idx = torch.multinomial(weights, batch_size, replacement=True, generator=g)
        else:
            while len(order) < batch_size:
                order = torch.cat([order, torch.randperm(len(x), generator=g)])
            idx, order = order[:batch_size], order[batch_size:]
        xb, yb = x[idx].to(dev), y[idx].to(dev)
        if mix is not None:
            xb, yb = mix(xb, yb)
        loss = F.cross_entropy(model(random_affine(xb, g)), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: torch.nn.Module, dataset: Dataset, *, batch_size: int = 512, device: Any = None) -> float:
    """Top-1 accuracy of ``model`` on ``(image, label)`` items."""
    dev = device or next(model.parameters()).device
    model.eval()
    correct = total = 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        pred = model(x.to(dev).float()).argmax(1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)
