"""Synthetic, class-labelled datasets that plug into a DataLoader.

Item ``i`` is a pure function of ``(seed, i)``, drawn with local ``torch.Generator``
objects, never the global RNG, so shuffling, worker count and restarts change nothing.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from genaug._deprecation import renamed_kwarg, warn_deprecated
from genaug._validation import check_choice, check_float, check_int
from genaug.data.plan import block_generator, item_generator, plan_labels
from genaug.data.real import apply_transforms
from genaug.generators.base import check_generator


def class_weight_vector(
    model: Any,
    class_weights: Sequence[float] | Mapping[str, float] | None,
    classes: Sequence[str] | None,
) -> np.ndarray:
    """Weights per class index from a sequence, a {name: weight} map and/or a class subset."""
    check_generator(model, conditional=True)
    k = model.num_classes
    names = list(model.classes)
    if class_weights is None:
        w = np.ones(k)
    elif isinstance(class_weights, Mapping):
        unknown = sorted(set(class_weights) - set(names))
        if unknown:
            raise ValueError(f"unknown class names {unknown} in class_weights; the generator's classes are {names}")
        w = np.array([float(class_weights.get(c, 0.0)) for c in names])
    else:
        w = np.asarray(list(class_weights), dtype=float)
        if w.shape != (k,):
            raise ValueError(f"class_weights must have {k} entries (one per class), got {len(w)}")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"class_weights must be finite, non-negative and not all zero, got {w.tolist()}")
    if classes is not None:
        unknown = sorted(set(classes) - set(names))
        if unknown:
            raise ValueError(f"unknown class names {unknown}; the generator's classes are {names}")
        w = w * np.array([c in set(classes) for c in names], dtype=float)
        if w.sum() <= 0:
            raise ValueError(f"classes {list(classes)} all have zero weight")
    return w


def to_output(x: torch.Tensor, output: str) -> Any:
    """A float (C, H, W) image in [0, 1] as a tensor or a PIL image."""
    if output == "tensor":
        return x
    arr = x.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode="L" if arr.shape[2] == 1 else "RGB")


def checked_indices(indices: Sequence[int], n: int) -> np.ndarray:
    """``indices`` of a dataset of ``n`` items as non-negative int64, or IndexError naming the bad ones."""
    bad = [i for i in indices if not -n <= i < n]
    if bad:
        raise IndexError(f"indices {bad[:5]} out of range for {n} items")
    return np.asarray(indices, dtype=np.int64) % max(n, 1)


class SyntheticDataset(Dataset):
    """A map-style dataset of synthetic ``(image, int label)`` pairs.

    Args:
        model: a class-labelled :class:`~genaug.Generator`.
        size: number of items, labels drawn by ``class_weights`` (exact counts).
        per_class: or this many items of every (selected) class.
        class_weights: a weight per class (sequence or ``{name: weight}``).
        classes: restrict to these class names.
        seed: the seed of labels and images.
        transform, target_transform: applied to each item, as in torchvision.
        truncation: latent scale in (0, 1].
        output: "tensor" (float32 (C, H, W) in [0, 1]) or "pil".
        block_size, cache_blocks: for generators without a latent map (labelled, filtered),
            items are generated in seeded blocks of ``block_size`` and the last ``cache_blocks``
            blocks are kept per process. Other generators decode each DataLoader batch in one pass.

    Example:
        >>> ds = SyntheticDataset(gen, per_class=1000, seed=0)  # doctest: +SKIP
        >>> loader = DataLoader(ds, batch_size=128, shuffle=True, num_workers=2)  # doctest: +SKIP
    """

    @renamed_kwarg("generator", "model")
    def __init__(
        self,
        model: Any,
        *,
        size: int | None = None,
        per_class: int | None = None,
        class_weights: Sequence[float] | Mapping[str, float] | None = None,
        classes: Sequence[str] | None = None,
        seed: int = 0,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        truncation: float = 1.0,
        output: str = "tensor",
        block_size: int = 256,
        cache_blocks: int = 4,
    ) -> None:
        check_generator(model, conditional=True)
        check_choice("output", output, ("tensor", "pil"))
        check_float("truncation", truncation, low=0.0, high=1.0, low_open=True)
        check_int("block_size", block_size, minimum=1)
        check_int("cache_blocks", cache_blocks, minimum=1)
        check_int("seed", seed, minimum=0)
        weights = class_weight_vector(model, class_weights, classes)
        if per_class is not None:
            check_int("per_class", per_class, minimum=1)
            if class_weights is not None:
                raise ValueError("give per_class or class_weights, not both")
            labels = plan_labels(int((weights > 0).sum()), per_class=per_class, seed=seed)
            labels = np.flatnonzero(weights > 0)[labels]
        else:
            if size is None:
                raise ValueError("give size or per_class")
            check_int("size", size, minimum=1)
            labels = plan_labels(model.num_classes, n=size, class_weights=weights, seed=seed)
        dtype = np.int16 if model.num_classes < 2**15 else np.int64
        self._labels = labels.astype(dtype)
        self.model = model
        self.classes = list(model.classes)
        self.seed = seed
        self.transform = transform
        self.target_transform = target_transform
        self.truncation = truncation
        self.output = output
        self.block_size = block_size
        self.cache_blocks = cache_blocks
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()

    @property
    def generator(self) -> Any:
        """Deprecated name of :attr:`model`."""
        warn_deprecated(f"{type(self).__name__}.generator", f"{type(self).__name__}.model")
        return self.model

    @property
    def targets(self) -> torch.Tensor:
        """All labels as int64, known without generating any image."""
        return torch.from_numpy(self._labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self._labels)

    def _block(self, b: int) -> torch.Tensor:
        block = self._cache.get(b)
        if block is None:
            lo = b * self.block_size
            y = torch.from_numpy(self._labels[lo : lo + self.block_size].astype(np.int64))
            block = self.model.sample(y, generator=block_generator(self.seed, b),
                                          truncation=self.truncation).cpu()
            self._cache[b] = block
            if len(self._cache) > self.cache_blocks:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(b)
        return block

    def _images(self, indices: np.ndarray) -> torch.Tensor:
        """Images of the given items. Generators with a latent map draw item i's latent from
        a generator seeded by (seed, i) and decode the whole request in one forward pass, so a
        shuffled DataLoader batch costs one batched pass; others use seeded blocks and a cache."""
        if getattr(self.model, "supports_latents", False):
            z = torch.stack([
                torch.randn(self.model.latent_dim, generator=item_generator(self.seed, int(i)))
                for i in indices
            ]) * self.truncation
            y = torch.from_numpy(self._labels[indices].astype(np.int64))
            return self.model.decode(z, y).cpu()
        return torch.stack([self._block(int(i) // self.block_size)[int(i) % self.block_size] for i in indices])

    def _item(self, img: torch.Tensor, index: int) -> tuple[Any, Any]:
        img = to_output(img, self.output)
        target = int(self._labels[index])
        return apply_transforms(img, target, self.transform, self.target_transform)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        """Batched access, used by DataLoader: one generator pass for the whole batch."""
        idx = checked_indices(indices, len(self))
        images = self._images(idx)
        return [self._item(images[j], int(i)) for j, i in enumerate(idx)]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.__getitems__([index])[0]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()  # pickles the generator's weights, never generated images
        return state

    def __repr__(self) -> str:
        lines = [
            f"Dataset {type(self).__name__}",
            f"    Number of datapoints: {len(self)}",
            f"    Generator: {getattr(self.generator, 'family', type(self.generator).__name__)} "
            f"({self.generator.num_classes} classes, image shape {tuple(self.generator.image_shape)})",
            f"    Seed: {self.seed}, truncation: {self.truncation}, output: {self.output}",
        ]
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform}")
        if self.target_transform is not None:
            lines.append(f"    Target transform: {self.target_transform}")
        return "\n".join(lines)


class SyntheticStream(IterableDataset):
    """An iterable dataset of synthetic ``(image, int label)`` pairs, infinite or bounded.

    The stream is cut into blocks of ``batch_size``; block ``b`` (labels and images) depends
    only on ``(seed, epoch, b)``. Blocks are dealt round-robin to every (DDP rank, DataLoader
    worker), so no sample is produced twice and the union does not depend on the worker count.

    Args:
        model: a class-labelled generator.
        class_weights: a weight per class (sequence or ``{name: weight}``), uniform by default.
        seed: seed of the stream; ``set_epoch`` varies it per epoch.
        batch_size: images generated per forward pass.
        num_samples: stop after this many samples in all (``None``: infinite).
        rank, world_size: DDP position; taken from ``torch.distributed`` when initialised.

    Example:
        >>> stream = SyntheticStream(gen, num_samples=10_000)  # doctest: +SKIP
        >>> loader = DataLoader(stream, batch_size=128, num_workers=2)  # doctest: +SKIP
    """

    @renamed_kwarg("generator", "model")
    def __init__(
        self,
        model: Any,
        *,
        class_weights: Sequence[float] | Mapping[str, float] | None = None,
        seed: int = 0,
        batch_size: int = 256,
        num_samples: int | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        truncation: float = 1.0,
        output: str = "tensor",
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        check_generator(model, conditional=True)
        check_choice("output", output, ("tensor", "pil"))
        check_float("truncation", truncation, low=0.0, high=1.0, low_open=True)
        check_int("batch_size", batch_size, minimum=1)
        check_int("seed", seed, minimum=0)
        if num_samples is not None:
            check_int("num_samples", num_samples, minimum=1)
        weights = class_weight_vector(model, class_weights, None)
        self.probs = weights / weights.sum()
        self.model = model
        self.classes = list(model.classes)
        self.seed, self.epoch = seed, 0
        self.batch_size = batch_size
        self.num_samples = num_samples
        self.transform, self.target_transform = transform, target_transform
        self.truncation, self.output = truncation, output
        self.rank, self.world_size = rank, world_size


    @property
    def generator(self) -> Any:
        """Deprecated name of :attr:`model`."""
        warn_deprecated(f"{type(self).__name__}.generator", f"{type(self).__name__}.model")
        return self.model

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.num_samples is None:
            raise TypeError("an infinite SyntheticStream has no length")
        return self.num_samples

    def _shard(self) -> tuple[int, int]:
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            import torch.distributed as dist

            ready = dist.is_available() and dist.is_initialized()
            rank, world = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info is not None else (1, 0)
        return rank * workers + wid, world * workers

    def block(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.batch_size
        if self.num_samples is not None:
            n = min(n, self.num_samples - b * self.batch_size)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, b]))
        y = torch.from_numpy(rng.choice(len(self.probs), size=n, p=self.probs).astype(np.int64))
        g = block_generator(self.seed * 1_000_003 + self.epoch, b)
        return self.model.sample(y, generator=g, truncation=self.truncation).cpu(), y

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        shard, shards = self._shard()
        n_blocks = math.inf if self.num_samples is None else -(-self.num_samples // self.batch_size)
        b = shard
        while b < n_blocks:
            images, labels = self.block(b)
            for img, label in zip(images, labels.tolist(), strict=True):
                yield apply_transforms(to_output(img, self.output), label, self.transform, self.target_transform)
            b += shards

    def __repr__(self) -> str:
        size = "infinite" if self.num_samples is None else self.num_samples
        return (f"Dataset {type(self).__name__}\n    Number of datapoints: {size}\n"
                f"    Seed: {self.seed}, batch_size: {self.batch_size}, output: {self.output}")


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s pool: distinct for every (seed, epoch) pair."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint32)[0])


class SyntheticPool(Dataset):
    """Synthetic items generated in the background, a fresh pool every epoch.

    For CPU training with ``num_workers=0``: while the training loop works through epoch
    ``e``'s pool, a background thread generates epoch ``e + 1``'s, so an item costs a tensor
    index instead of a generator pass. Epoch ``e``'s pool is exactly
    ``SyntheticDataset(model, ..., seed=epoch_seed(seed, e))``: it depends on the seed and the
    epoch only, never on timing. Call :meth:`set_epoch` at the start of every epoch (as with
    ``DistributedSampler``); it waits for that epoch's pool if it is not ready yet.

    The pool holds ``len(self)`` float32 images (two pools while the next one is made). With
    DataLoader workers each worker would get a copy of the pool; use :class:`SyntheticDataset`
    there instead. :meth:`close` (or a ``with`` block) stops the background thread at its next
    chunk; without it, a program that ends mid-epoch first finishes the next pool.

    Example:
        >>> pool = SyntheticPool(gen, per_class=1000, seed=0)  # doctest: +SKIP
        >>> for epoch in range(10):  # doctest: +SKIP
        ...     pool.set_epoch(epoch)
        ...     for x, y in DataLoader(pool, batch_size=128, shuffle=True): ...
    """

    def __init__(self, model: Any, *, seed: int = 0, transform: Callable | None = None,
                 target_transform: Callable | None = None, chunk: int = 1024, **kwargs: Any) -> None:
        check_int("seed", seed, minimum=0)
        check_int("chunk", chunk, minimum=1)
        if kwargs.get("output", "tensor") != "tensor":
            raise ValueError(f"SyntheticPool holds tensors; got output={kwargs['output']!r}")
        self.seed = seed
        self.transform = transform
        self.target_transform = target_transform
        self.chunk = chunk
        self._kwargs = kwargs
        self.model = model
        self.classes = self._dataset(0).classes  # validates the arguments before any thread starts
        self.epoch = 0
        self._pending: dict[int, concurrent.futures.Future[tuple[torch.Tensor, np.ndarray]]] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = threading.Event()
        self.set_epoch(0)

    def _dataset(self, epoch: int) -> SyntheticDataset:
        return SyntheticDataset(self.model, seed=epoch_seed(self.seed, epoch), **self._kwargs)

    def _make(self, epoch: int) -> tuple[torch.Tensor, np.ndarray]:
        """Epoch ``epoch``'s images and labels."""
        ds = self._dataset(epoch)
        c, h, w = self.model.image_shape
        out = torch.empty(len(ds), c, h, w)
        for lo in range(0, len(ds), self.chunk):
            if self._closed.is_set():
                raise RuntimeError("the SyntheticPool was closed")
            idx = np.arange(lo, min(lo + self.chunk, len(ds)))
            out[lo : lo + len(idx)] = ds._images(idx)
        return out, ds._labels

    def _start(self, epoch: int) -> None:
        if epoch not in self._pending:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="genaug-pool")
            self._pending[epoch] = self._executor.submit(self._make, epoch)

    def set_epoch(self, epoch: int) -> None:
        """Switch to epoch ``epoch``'s pool (waiting for it if needed) and start making the next one."""
        check_int("epoch", epoch, minimum=0)
        if self._closed.is_set():
            raise RuntimeError("this SyntheticPool is closed; its current pool can still be read")
        self._start(epoch)
        self._images, self._labels = self._pending.pop(epoch).result()
        for stale in [e for e in self._pending if e != epoch + 1]:
            self._pending.pop(stale).cancel()
        self.epoch = epoch
        self._start(epoch + 1)

    def close(self) -> None:
        """Stop making the next pool and end the background thread; the current pool stays readable."""
        self._closed.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._pending.clear()

    def __enter__(self) -> SyntheticPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def targets(self) -> torch.Tensor:
        """The current epoch's labels as int64 (the class counts are the same every epoch)."""
        return torch.from_numpy(self._labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        idx = checked_indices(indices, len(self))
        return [apply_transforms(self._images[int(i)], int(self._labels[i]), self.transform, self.target_transform)
                for i in idx]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pending"], state["_executor"] = {}, None  # the current pool travels, the next is made again
        del state["_closed"]  # an Event holds a lock; a copy starts open
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._closed = threading.Event()

    def __repr__(self) -> str:
        return (f"Dataset {type(self).__name__}\n    Number of datapoints: {len(self)}\n"
                f"    Seed: {self.seed}, epoch: {self.epoch}")
