"""Labelled synthetic datasets in HDF5: crash-safe export and a torchvision-style reader.

Layout: ``images`` uint8 (N, H, W) for one channel or (N, C, H, W), chunked
along N; ``labels`` int64; optional ``latents`` float32; attributes describe
the schema, versions, generator, seed and per-class counts, and
``complete=True`` is written last. The file is written under a temporary name
in the target folder and renamed only when complete.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from genaug._validation import check_choice, check_float, check_int

SCHEMA_VERSION = 1


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


def weights_sha256(generator: Any) -> str:
    h = hashlib.sha256()
    for k, v in sorted(generator.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def export_hdf5(
    generator: Any,
    path: str | os.PathLike[str],
    *,
    per_class: int | None = None,
    n: int | None = None,
    class_weights: Sequence[float] | None = None,
    seed: int = 0,
    batch_size: int = 512,
    truncation: float = 1.0,
    compression: str = "lzf",
    chunk_size: int | None = None,
    with_latents: bool = False,
    overwrite: bool = False,
    generator_name: str | None = None,
    progress: bool = True,
) -> Path:
    """Write a labelled synthetic dataset to ``path`` (HDF5), atomically.

    Item ``i`` depends only on ``(seed, i // batch_size)``, so the file is the
    same whatever the device or run.

    Example:
        >>> export_hdf5(gen, "synthetic.h5", per_class=1000)  # doctest: +SKIP
    """
    path = Path(path)
    check_int("batch_size", batch_size, minimum=1)
    check_choice("compression", compression, ("lzf", "gzip", "none"))
    check_float("truncation", truncation, low=0.0, high=1.0, low_open=True)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if path.suffix not in (".h5", ".hdf5"):
        raise ValueError(f"expected an output path ending in .h5 or .hdf5, got {path.name!r}")
    labels = plan_labels(generator.num_classes, per_class=per_class, n=n,
                         class_weights=class_weights, seed=seed)
    total = len(labels)
    c, h, w = generator.image_shape
    item_shape = (h, w) if c == 1 else (c, h, w)
    item_bytes = int(np.prod(item_shape))
    if chunk_size is None:
        # Aim for chunks of about 256 KiB, within HDF5's sweet spot of 10 KiB to 1 MiB.
        chunk_size = max(1, min(total, (256 * 1024) // item_bytes))
    check_int("chunk_size", chunk_size, minimum=1)
    comp = None if compression == "none" else compression
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with h5py.File(tmp, "w") as f:
            images = f.create_dataset("images", shape=(total, *item_shape), dtype="uint8",
                                      chunks=(min(chunk_size, total), *item_shape), compression=comp)
            f.create_dataset("labels", data=labels, dtype="int64", chunks=True, compression=comp)
            latents = (
                f.create_dataset("latents", shape=(total, generator.latent_dim), dtype="float32",
                                 chunks=(min(chunk_size, total), generator.latent_dim), compression=comp)
                if with_latents else None
            )
            _write_attrs(f, generator, labels, seed=seed, truncation=truncation,
                         generator_name=generator_name, batch_size=batch_size)
            bar = tqdm(total=total, unit="img", disable=not progress, desc=f"export {path.name}")
            for block, start in enumerate(range(0, total, batch_size)):
                stop = min(start + batch_size, total)
                y = torch.from_numpy(labels[start:stop])
                g = block_generator(seed, block)
                if with_latents:
                    z = generator.noise(stop - start, generator=g, truncation=truncation)
                    latents[start:stop] = z.cpu().numpy()
                    g = block_generator(seed, block)
                x = generator.sample(y, generator=g, truncation=truncation)
                images[start:stop] = to_uint8(x).reshape(stop - start, *item_shape).cpu().numpy()
                bar.update(stop - start)
            bar.close()
            f.attrs["complete"] = True
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _write_attrs(f: h5py.File, generator: Any, labels: np.ndarray, **info: Any) -> None:
    import genaug

    card = generator.card()
    counts = np.bincount(labels, minlength=generator.num_classes)
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "genaug_version": genaug.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "h5py_version": h5py.__version__,
        "generator_family": card["family"],
        "generator_name": info["generator_name"] or "",
        "generator_config": json.dumps(card),
        "generator_sha256": weights_sha256(generator),
        "seed": info["seed"],
        "batch_size": info["batch_size"],
        "truncation": info["truncation"],
        "classes": json.dumps(list(generator.classes)),
        "class_counts": counts.astype(np.int64),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
    }
    for k, v in attrs.items():
        f.attrs[k] = v


class HDF5Dataset(Dataset):
    """Reads a file written by :func:`export_hdf5`: items are ``(uint8 tensor (C, H, W), int label)``.

    The file is opened lazily in each process (never before a DataLoader forks).

    Example:
        >>> ds = HDF5Dataset("synthetic.h5")  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        self.path = Path(path)
        self.transform = transform
        self.target_transform = target_transform
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        with h5py.File(self.path, "r") as f:
            self.attrs = check_schema(f, self.path)
            self.targets = torch.from_numpy(f["labels"][()])
            self._shape = f["images"].shape
        self.classes = json.loads(self.attrs["classes"])
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return self._shape[0]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        img = torch.from_numpy(self._file["images"][index])
        if img.ndim == 2:
            img = img.unsqueeze(0)
        target = int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}\n    Number of datapoints: {len(self)}\n    File: {self.path}\n"
            f"    Generator: {self.attrs.get('generator_family')} {self.attrs.get('generator_name')}"
        )


def check_schema(f: h5py.File, path: Path) -> dict[str, Any]:
    attrs = dict(f.attrs)
    if attrs.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: expected schema_version {SCHEMA_VERSION}, got {attrs.get('schema_version')!r}")
    if not bool(attrs.get("complete", False)):
        raise ValueError(f"{path}: the file is incomplete (attribute complete is not True)")
    for name, dtype in (("images", np.uint8), ("labels", np.int64)):
        if name not in f:
            raise ValueError(f"{path}: dataset {name!r} is missing")
        if f[name].dtype != dtype:
            raise ValueError(f"{path}: dataset {name!r} must be {np.dtype(dtype)}, got {f[name].dtype}")
    if f["images"].shape[0] != f["labels"].shape[0]:
        raise ValueError(
            f"{path}: images and labels differ in length ({f['images'].shape[0]} vs {f['labels'].shape[0]})"
        )
    return attrs
