"""A fixed, small classifier recipe: used by examples, judges and train-on-synthetic tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from genaug._validation import check_int
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
