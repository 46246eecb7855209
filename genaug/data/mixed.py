"""Real data mixed with synthetic samples, including class balancing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from genaug._deprecation import renamed_kwarg
from genaug._validation import check_float, check_int
from genaug.data.labelled import dataset_classes, dataset_labels
from genaug.data.synthetic import SyntheticDataset, SyntheticPool, checked_indices
from genaug.generators.base import check_generator
from genaug.generators.wrappers import match_classes


def real_targets(real: Any) -> torch.Tensor:
    """The labels of a real dataset, read cheaply where it tells them (see :func:`dataset_labels`)."""
    labels = dataset_labels(real)
    if labels.ndim != 1:
        raise TypeError(f"real labels must be 1-D, got shape {tuple(labels.shape)}")
    return labels


class MixedDataset(Dataset):
    """Real items followed by synthetic ones; shuffle with the DataLoader.

    Either ``synthetic_fraction`` (the share of synthetic items in the result, drawn with
    the real data's class distribution) or ``balance``:

    - ``"uniform"``: top every class up to the count of the largest real class;
    - ``"match"``: as many synthetic items per class as real ones (doubles the data);
    - ``{class name or index: count}``: that many synthetic items of each listed class.

    With ``pool=True`` the synthetic items come from a :class:`SyntheticPool` made in the
    background and refreshed by :meth:`set_epoch` (for CPU training without workers; ``output``
    must be "tensor").

    Synthetic items come from a :class:`SyntheticDataset` with ``output`` and ``transform``,
    which should produce what the real dataset's items look like.

    Example:
        >>> mixed = MixedDataset(mnist_train, gen, balance="uniform", output="pil",
        ...                      transform=v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]))
        ...  # doctest: +SKIP
    """

    @renamed_kwarg("generator", "model")
    def __init__(
        self,
        real: Any,
        model: Any,
        *,
        synthetic_fraction: float | None = None,
        balance: str | Mapping[Any, int] | None = None,
        seed: int = 0,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        output: str = "tensor",
        truncation: float = 1.0,
        pool: bool = False,
    ) -> None:
        check_generator(model, conditional=True)
        if not isinstance(pool, bool):
            raise TypeError(f"pool must be a bool, got {type(pool).__name__}")
        if not (hasattr(real, "__getitem__") and hasattr(real, "__len__")):
            raise TypeError(
                f"real must be a map-style dataset (with __getitem__ and __len__), got {type(real).__name__}")
        check_int("seed", seed, minimum=0)
        check_float("truncation", truncation, low=0.0, high=1.0, low_open=True)
        if len(real) == 0:
            raise ValueError("expected a non-empty real dataset, got 0 items")
        if (synthetic_fraction is None) == (balance is None):
            raise ValueError(
                f"give exactly one of synthetic_fraction or balance, got synthetic_fraction={synthetic_fraction}, "
                f"balance={balance!r}"
            )
        targets = real_targets(real)
        if len(targets) != len(real):
            raise ValueError(f"real has {len(real)} items but {len(targets)} targets")
        real_classes = dataset_classes(real)
        # Synthetic label i must mean the real data's class i: match the generator's classes by name.
        model = match_classes(model, real_classes, name="real")
        k = model.num_classes
        if int(targets.max()) >= k or int(targets.min()) < 0:
            raise ValueError(
                f"real labels must be in [0, {k - 1}] (the generator's classes), got values in "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )
        _check_shape(real, model)
        counts = np.bincount(targets.numpy(), minlength=k)
        if synthetic_fraction is not None:
            check_float("synthetic_fraction", synthetic_fraction, low=0.0, high=1.0, high_open=True)
            n_syn = round(len(real) * synthetic_fraction / (1 - synthetic_fraction))
            syn_counts = _split(n_syn, counts)
        elif balance == "uniform":
            syn_counts = counts.max() - counts
        elif balance == "match":
            syn_counts = counts.copy()
        elif isinstance(balance, Mapping):
            syn_counts = np.zeros(k, dtype=np.int64)
            names = list(model.classes)
            for key, count in balance.items():
                idx = names.index(key) if key in names else key
                if not isinstance(idx, int) or not 0 <= idx < k:
                    raise ValueError(f"unknown class {key!r} in balance; classes are {names}")
                if not isinstance(count, int) or count < 0:
                    raise ValueError(f"balance counts must be ints >= 0, got {count!r} for {key!r}")
                syn_counts[idx] = count
        else:
            raise ValueError(f"balance must be 'uniform', 'match' or a {{class: count}} dict, got {balance!r}")
        self.real = real
        self._real_targets = targets
        self.model = model
        self.synthetic_counts = syn_counts.astype(np.int64)
        n_syn = int(self.synthetic_counts.sum())
        if n_syn:
            per = self.synthetic_counts
            weights = per / per.sum()
            make = SyntheticPool if pool else SyntheticDataset
            self.synthetic: SyntheticDataset | SyntheticPool | None = make(
                model, size=n_syn, class_weights=weights.tolist(), seed=seed, transform=transform,
                target_transform=target_transform, output=output, truncation=truncation,
            )
        else:
            self.synthetic = None
        self.classes = list(real_classes) if real_classes is not None else list(model.classes)

    @property
    def targets(self) -> torch.Tensor:
        parts = [self._real_targets]
        if self.synthetic is not None:
            parts.append(self.synthetic.targets)
        return torch.cat(parts)

    @property
    def is_synthetic(self) -> torch.Tensor:
        """A bool per item: True for synthetic items."""
        n_syn = 0 if self.synthetic is None else len(self.synthetic)
        return torch.cat([torch.zeros(len(self.real), dtype=torch.bool), torch.ones(n_syn, dtype=torch.bool)])

    def __len__(self) -> int:
        return len(self.real) + (0 if self.synthetic is None else len(self.synthetic))

    def set_epoch(self, epoch: int) -> None:
        """With ``pool=True``, switch to epoch ``epoch``'s synthetic pool; otherwise nothing changes."""
        if isinstance(self.synthetic, SyntheticPool):
            self.synthetic.set_epoch(epoch)

    def close(self) -> None:
        """With ``pool=True``, stop the pool's background thread (:meth:`SyntheticPool.close`)."""
        if isinstance(self.synthetic, SyntheticPool):
            self.synthetic.close()

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = int(index) % len(self)
        if index < len(self.real):
            return self.real[index]
        return self.synthetic[index - len(self.real)]

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, Any]]:
        """Batched access for DataLoader: the batch's synthetic items come from one generator pass."""
        n, n_real = len(self), len(self.real)
        idx = checked_indices(indices, n).tolist()
        syn_pos = [j for j, i in enumerate(idx) if i >= n_real]
        out: list[Any] = [None] * len(idx)
        if syn_pos:
            for j, item in zip(syn_pos, self.synthetic.__getitems__([idx[j] - n_real for j in syn_pos]), strict=True):
                out[j] = item
        for j, i in enumerate(idx):
            if i < n_real:
                out[j] = self.real[i]
        return out

    def __repr__(self) -> str:
        n_syn = 0 if self.synthetic is None else len(self.synthetic)
        return (f"Dataset {type(self).__name__}\n    Number of datapoints: {len(self)}\n"
                f"    Real: {len(self.real)}, synthetic: {n_syn} (per class {self.synthetic_counts.tolist()})")


def _split(n: int, counts: np.ndarray) -> np.ndarray:
    """n items split in proportion to counts, summing exactly to n."""
    exact = counts / counts.sum() * n
    out = np.floor(exact).astype(np.int64)
    out[np.argsort(-(exact - out), kind="stable")[: n - out.sum()]] += 1
    return out


def _check_shape(real: Any, model: Any) -> None:
    """Refuse a generator whose image shape differs from the real data's."""
    data = getattr(real, "data", None)
    if isinstance(data, torch.Tensor) and data.ndim == 3:  # torchvision MNIST-style (N, H, W)
        shape = (1, *data.shape[1:])
    else:
        img = real[0][0]
        if isinstance(img, torch.Tensor) and img.ndim == 3:
            shape = tuple(img.shape)
        elif hasattr(img, "getbands"):
            shape = (len(img.getbands()), img.size[1], img.size[0])
        else:
            return  # e.g. numpy arrays in an albumentations pipeline: not checked here
    if tuple(shape) != tuple(model.image_shape):
        raise ValueError(
            f"expected real images of shape {tuple(model.image_shape)} (the generator's), got {tuple(shape)}"
        )
