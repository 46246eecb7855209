"""Stored samples behind the generator interface: sample a slow generator once, mix it in often."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from genaug.generators.base import BaseGenerator, check_classes


class StoredSamples(BaseGenerator):
    """A class-labelled generator that draws from stored images instead of a network.

    ``sample(labels)`` returns, for each label, one of the stored images of that class, drawn
    uniformly with replacement from ``generator``. It makes a slow generator (a diffusion
    model: tens of network passes per image) usable where genaug samples on the fly, e.g. in
    :class:`~genaug.SyntheticBatchMix` on a CPU: export its samples once (``genaug export``,
    sharded over GPUs with ``torchrun`` if need be) and load the file with
    :func:`genaug.load_generator` or :meth:`from_hdf5`. A stored image is drawn again and again,
    so a bank should hold many more images than a training run's augmentation needs to be
    varied; the draw, not the bank, is what the seed controls.

    Args:
        images: (N, C, H, W) or (N, H, W) uint8 images, or float images in [0, 1]; kept as uint8
            (float images are rounded to the nearest of 256 levels, as an export stores them).
        labels: (N,) class indices in ``[0, len(classes))``; every class needs an image.
        classes: class names (default ``"0"``, ``"1"``, ...: as many as ``labels.max() + 1``).

    Example:
        >>> bank = genaug.load_generator("runs/cddpm-samples.h5")  # doctest: +SKIP
        >>> mix = genaug.transforms.SyntheticBatchMix(bank, fraction=0.5)  # doctest: +SKIP
    """

    family = "stored"
    #: An image is a stored row, not a function of a latent.
    supports_latents = False

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, classes: list[str] | None = None) -> None:
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise TypeError(f"images and labels must be torch.Tensors, got {type(images).__name__} and "
                            f"{type(labels).__name__}")
        if images.ndim == 3:
            images = images.unsqueeze(1)
        if images.ndim != 4 or images.shape[0] == 0:
            raise ValueError(f"images must be a non-empty (N, C, H, W) or (N, H, W) tensor, got shape "
                             f"{tuple(images.shape)}")
        if images.is_floating_point():
            lo, hi = float(images.min()), float(images.max())
            if lo < 0.0 or hi > 1.0:
                raise ValueError(f"float images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
            images = images.mul(255).round_().to(torch.uint8)
        elif images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
        if labels.shape != (images.shape[0],) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be ({images.shape[0]},) integers (one per image), got dtype "
                             f"{labels.dtype} and shape {tuple(labels.shape)}")
        labels = labels.long()
        k = len(classes) if classes is not None else int(labels.max()) + 1
        classes = check_classes(classes, k)
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"labels must be in [0, {k - 1}], got values in [{lo}, {hi}]")
        counts = torch.bincount(labels, minlength=k)
        if bool((counts == 0).any()):
            empty = int((counts == 0).nonzero()[0])
            raise ValueError(f"every class needs a stored image; class {empty} ({classes[empty]!r}) has none")
        super().__init__(config=None, classes=classes, image_shape=tuple(images.shape[1:]), latent_dim=0)
        order = torch.argsort(labels, stable=True)
        self.register_buffer("images", images[order].contiguous(), persistent=False)
        self.register_buffer("counts", counts, persistent=False)
        self.register_buffer("starts", torch.cumsum(counts, 0) - counts, persistent=False)

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike[str]) -> StoredSamples:
        """All samples of a file written by ``genaug export`` (or :func:`~genaug.data.export_hdf5`),
        read into memory as uint8; its attributes become :attr:`provenance`."""
        from genaug.data.hdf5 import HDF5Dataset

        ds = HDF5Dataset(path)
        images, labels = ds.tensors()
        bank = cls(images, labels, classes=ds.classes)
        bank.provenance = {"stored_samples": os.fspath(Path(path)), **{k: _plain(v) for k, v in ds.attrs.items()}}
        return bank

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return self.images.shape[0]

    def sample(self, labels: torch.Tensor, *, generator: torch.Generator | None = None,
               truncation: float = 1.0) -> torch.Tensor:
        """One stored image of each label's class, float32 (N, C, H, W) in [0, 1].

        ``truncation`` must be 1.0: stored images have no latent to scale.
        """
        labels = self.check_labels(labels)
        if truncation != 1.0:
            raise ValueError(f"stored samples have no latent to truncate: truncation must be 1.0, got {truncation}")
        u = torch.rand(labels.numel(), generator=generator,
                       device=generator.device if generator is not None else torch.device("cpu"))
        labels = labels.to(self.device)
        offset = (u.to(self.device) * self.counts[labels]).long().clamp_max_(self.counts[labels] - 1)
        return self.images[self.starts[labels] + offset].float().div_(255)

    def card(self) -> dict[str, Any]:
        return {"family": self.family, "classes": self.classes, "image_shape": list(self.image_shape),
                "latent_dim": 0, "value_range": [0.0, 1.0], "samples": len(self)}

    def save_pretrained(self, path: str | os.PathLike[str], **kwargs: Any) -> Path:
        raise TypeError("StoredSamples holds data, not weights: keep the HDF5 file it was read from "
                        "(genaug export writes one)")

    def extra_repr(self) -> str:
        return f"samples={len(self)}, num_classes={self.num_classes}, image_shape={self.image_shape}"


def _plain(value: Any) -> Any:
    """An HDF5 attribute as a JSON-friendly value."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode()
    return value
