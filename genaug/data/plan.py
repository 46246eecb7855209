"""Deterministic sampling plans: which label each item gets, and the noise of each block.

Every synthetic item in genaug is a pure function of (seed, index): labels come
from a seeded plan and images from a ``torch.Generator`` seeded per block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from genaug._validation import check_int


def plan_labels(
    num_classes: int,
    *,
    per_class: int | None = None,
    n: int | None = None,
    class_weights: Sequence[float] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The label of every item, a pure function of the arguments (shuffled by ``seed``)."""
    if (per_class is None) == (n is None):
        raise ValueError(f"give exactly one of per_class or n, got per_class={per_class}, n={n}")
    if num_classes < 1:
        raise ValueError(f"expected a class-labelled generator (num_classes >= 1), got {num_classes}")
    if per_class is not None:
        check_int("per_class", per_class, minimum=1)
        counts = np.full(num_classes, per_class, dtype=np.int64)
    else:
        check_int("n", n, minimum=1)
        w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, dtype=float)
        if w.shape != (num_classes,) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"class_weights must be {num_classes} finite non-negative numbers with a positive sum, "
                f"got {class_weights!r}"
            )
        exact = w / w.sum() * n
        counts = np.floor(exact).astype(np.int64)
        # Largest remainders get the leftover items, so counts sum to n exactly.
        counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), counts)
    np.random.default_rng(np.random.SeedSequence([seed, 0x1AB])).shuffle(labels)
    return labels


def block_generator(seed: int, block: int) -> torch.Generator:
    """The torch.Generator for one block of items: a pure function of (seed, block)."""
    s = int(np.random.SeedSequence([seed, block]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(s)


def item_generator(seed: int, index: int) -> torch.Generator:
    """The torch.Generator for one item: a pure function of (seed, index)."""
    s = int(np.random.SeedSequence([seed, index, 0x17E4]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(s)
