"""Labelled synthetic datasets in HDF5: crash-safe export and a torchvision-style reader.

Layout: ``images`` uint8 (N, H, W) for one channel or (N, C, H, W), chunked
along N; ``labels`` int64; optional ``latents`` float32; attributes describe
the schema, versions, generator, seed and per-class counts, and
``complete=True`` is written last. The file is written under a temporary name
in the target folder and renamed only when complete.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from genaug._deprecation import renamed_kwarg
from genaug._io import (
    OutputInUseError,
    atomic_write,
    check_output_path,
    disk_full_error,
    free_bytes,
    output_lock,
)
from genaug._validation import check_choice, check_float, check_int
from genaug._version import __version__
from genaug.data.plan import block_generator, plan_labels
from genaug.data.real import apply_transforms
from genaug.generators.base import check_generator, sampling_amp

SCHEMA_VERSION = 1

#: Target bytes per chunk of ``images`` when ``chunk_size`` is not given.
_CHUNK_BYTES = 4 * 1024


def weights_sha256(model: Any) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@renamed_kwarg("generator", "model")
def export_hdf5(
    model: Any,
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
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    generator_name: str | None = None,
    progress: bool = True,
) -> Path:
    """Write a labelled synthetic dataset to ``path`` (HDF5), crash-safely.

    Item ``i`` depends only on ``(seed, i // batch_size)``, so the content is the
    same whatever the device, the run, an interruption or the number of shards.
    The file is built as ``.NAME.partial`` beside ``path`` and renamed when
    complete; ``resume=True`` continues a partial file from its last complete block.
    ``shard=(rank, world)`` writes only that rank's contiguous share of the blocks
    (see :func:`export_sharded`).

    Example:
        >>> export_hdf5(gen, "synthetic.h5", per_class=1000)  # doctest: +SKIP
    """
    check_generator(model, conditional=False)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0)
    check_choice("compression", compression, ("lzf", "gzip", "none"))
    check_float("truncation", truncation, low=0.0, high=1.0, low_open=True)
    if path.suffix not in (".h5", ".hdf5"):
        raise ValueError(f"expected an output path ending in .h5 or .hdf5, got {path.name!r}")
    if with_latents and not getattr(model, "supports_latents", False):
        raise ValueError(
            f"with_latents needs a generator whose images are a function of their latents; "
            f"{type(model).__name__} (family {getattr(model, 'family', '?')!r}) samples by "
            "rejection, mixing or drawing stored images, so no latent reproduces its images"
        )
    check_output_path(path, name="output", overwrite=overwrite, overwrite_hint="overwrite=True (CLI: --overwrite)")
    labels = plan_labels(model.num_classes, per_class=per_class, n=n,
                         class_weights=class_weights, seed=seed)
    n_blocks = -(-len(labels) // batch_size)
    first_block, last_block = 0, n_blocks
    if shard is not None:
        rank, world = shard
        first_block, last_block = rank * n_blocks // world, (rank + 1) * n_blocks // world
    lo, hi = first_block * batch_size, min(last_block * batch_size, len(labels))
    total = hi - lo
    c, h, w = model.image_shape
    item_shape = (h, w) if c == 1 else (c, h, w)
    if chunk_size is None:
        # Chunks of about 4 KiB (5 MNIST digits): a shuffled DataLoader batch then decompresses little
        # beyond the items it asks for, and lzf still keeps the file at about 45% of the raw bytes
        # (benchmarks/export_throughput.py measures the read-back).
        chunk_size = max(1, _CHUNK_BYTES // int(np.prod(item_shape)))
    check_int("chunk_size", chunk_size, minimum=1)
    chunk = max(1, min(chunk_size, total))
    comp = None if compression == "none" else compression
    sha = weights_sha256(model)
    amp = sampling_amp(model)
    # bf16 sampling draws other images: part of the plan (float32 plans keep their earlier hash).
    plan = hashlib.sha256(
        labels.tobytes() + json.dumps([sha, seed, batch_size, truncation, with_latents, lo, hi,
                                       chunk, compression] + ([amp] if amp != "off" else [])).encode()
    ).hexdigest()
    partial = path.parent / f".{path.name}.partial"
    path.parent.mkdir(parents=True, exist_ok=True)
    item_bytes = int(np.prod(item_shape)) + (4 * model.latent_dim if with_latents else 0)
    with output_lock(path):
        # Checked again under the lock: another export may have finished meanwhile.
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
        _write_blocks(model, path, partial, labels, plan=plan, resume=resume, first_block=first_block,
                      last_block=last_block, lo=lo, hi=hi, item_shape=item_shape, item_bytes=item_bytes,
                      chunk=chunk, comp=comp, sha=sha, seed=seed, batch_size=batch_size, truncation=truncation,
                      amp=amp, with_latents=with_latents, shard=shard, generator_name=generator_name, progress=progress)
        os.replace(partial, path)
    return path


def _write_blocks(model: Any, path: Path, partial: Path, labels: np.ndarray, *, plan: str, resume: bool,
                  first_block: int, last_block: int, lo: int, hi: int, item_shape: tuple[int, ...],
                  item_bytes: int, chunk: int, comp: str | None, sha: str, seed: int, batch_size: int,
                  truncation: float, amp: str, with_latents: bool, shard: tuple[int, int] | None,
                  generator_name: str | None, progress: bool) -> None:
    """Generate and write blocks ``first_block + done .. last_block`` of the plan into ``partial``."""
    total = hi - lo
    f, done = _open_partial(partial, plan, _settings(model.card())) if resume else (None, 0)
    if f is None:
        f = h5py.File(partial, "w")
        # A shard can be empty (fewer blocks than ranks): then its datasets are plain, not chunked.
        def opts(chunks: tuple[int, ...] | None) -> dict[str, Any]:
            if total == 0:
                return {}
            return {"compression": comp} if chunks is None else {"chunks": chunks, "compression": comp}

        f.create_dataset("images", shape=(total, *item_shape), dtype="uint8", **opts((chunk, *item_shape)))
        f.create_dataset("labels", data=labels[lo:hi], dtype="int64", **opts(None))
        if with_latents:
            f.create_dataset("latents", shape=(total, model.latent_dim), dtype="float32",
                             **opts((chunk, model.latent_dim)))
        _write_attrs(f, model, labels[lo:hi], seed=seed, truncation=truncation, amp=amp, sha=sha,
                     generator_name=generator_name, batch_size=batch_size)
        f.attrs["plan_sha256"] = plan
        f.attrs["item_range"] = np.array([lo, hi], dtype=np.int64)
        if shard is not None:
            f.attrs["shard"] = np.array(shard, dtype=np.int64)
        f.attrs["blocks_done"] = 0
    with f:
        bar = tqdm(total=total, initial=min(done * batch_size, total), unit="img",
                   disable=not progress, desc=f"export {path.name}")

        def write(block: int, start: int, stop: int, images: np.ndarray, latents: np.ndarray | None) -> None:
            # Stop cleanly before HDF5 meets a full disk (it can't recover from a failed write):
            # the blocks written so far stay resumable.
            if free_bytes(partial.parent) < (stop - start) * item_bytes * 2 + _SPACE_MARGIN:
                written = (block - first_block) * batch_size
                raise disk_full_error(path, kept=f"{written} of {total} images are kept in {partial.name}; "
                                                 "free some space and rerun with --resume (resume=True)")
            if latents is not None:
                f["latents"][start - lo : stop - lo] = latents
            f["images"][start - lo : stop - lo] = images
            f.attrs["blocks_done"] = block - first_block + 1
            f.flush()
            bar.update(stop - start)

        # Generation runs here while a writer thread compresses and writes the previous block, in
        # block order, so the file and its resume points are those of writing each block in turn.
        with BlockWriter(write) as writer:
            for block in range(first_block + done, last_block):
                start, stop = block * batch_size, min((block + 1) * batch_size, len(labels))
                y = torch.from_numpy(labels[start:stop])
                z = None
                if with_latents:
                    z = model.noise(stop - start, generator=block_generator(seed, block), truncation=truncation)
                    z = z.cpu().numpy()
                x = model.sample(y, generator=block_generator(seed, block), truncation=truncation)
                writer.put(block, start, stop, to_uint8(x).reshape(stop - start, *item_shape).cpu().numpy(), z)
        bar.close()
        f.attrs["complete"] = True


class BlockWriter:
    """Runs ``write(*args)`` for each :meth:`put` on one background thread, in order.

    At most ``depth`` blocks wait, so memory stays bounded. An error in ``write`` is raised
    again by the next :meth:`put` or on leaving the ``with`` block, once the thread has stopped.
    Leaving the block on an error of the caller's own finishes the write under way and drops
    the blocks still waiting.
    """

    def __init__(self, write: Callable[..., None], depth: int = 2) -> None:
        self._write = write
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="genaug-hdf5-writer", daemon=True)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None and not self._cancelled:
                try:
                    self._write(*item)
                except BaseException as err:  # raised again in the caller's thread
                    self._error = err

    def __enter__(self) -> BlockWriter:
        self._thread.start()
        return self

    def put(self, *args: Any) -> None:
        if self._error is not None:
            self._finish()
            raise self._error
        self._queue.put(args)

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._cancelled = True
        self._finish()
        if exc_type is None and self._error is not None:
            raise self._error


#: Free space kept in reserve beyond a block's own bytes (HDF5 metadata, the chunk cache, the file system).
_SPACE_MARGIN = 2**20


def _settings(card: dict[str, Any]) -> str:
    """A generator card without its provenance, at every level: what decides its samples beyond
    the weights (a diffusion model's sampler, a gate's threshold, a mixture's shares)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "provenance"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(card), sort_keys=True)


def _open_partial(partial: Path, plan: str, settings: str) -> tuple[h5py.File | None, int]:
    """Reopen a partial export made with the same plan by a generator of the same ``settings``
    (:func:`_settings`); (None, 0) if absent, different or damaged."""
    if not partial.exists():
        return None, 0
    try:
        f = h5py.File(partial, "a")
    except OSError:
        tqdm.write(f"{partial}: damaged partial file, starting again")
        return None, 0
    try:
        made_by = _settings(json.loads(f.attrs.get("generator_config", "{}")))
    except (TypeError, ValueError):
        made_by = None
    # The weights are in the plan; settings such as a sampler's steps are not (older plans keep their hash).
    if f.attrs.get("plan_sha256") != plan or made_by != settings:
        f.close()
        tqdm.write(f"{partial}: made with other settings, starting again")
        return None, 0
    if not _chunks_readable(f):
        # A kill while a compressed chunk was being rewritten leaves it unreadable, and
        # finishing that chunk would need to read it back.
        f.close()
        tqdm.write(f"{partial}: damaged chunk in partial file, starting again")
        return None, 0
    return f, int(f.attrs["blocks_done"])


def _chunks_readable(f: h5py.File) -> bool:
    """Read every chunk of the written datasets once (unwritten chunks cost nothing)."""
    try:
        for name in ("images", "latents"):
            if name in f:
                for chunk in f[name].iter_chunks():
                    f[name][chunk]
    except OSError:
        return False
    return True


def shard_path(path: Path, rank: int, world: int) -> Path:
    return path.with_name(f"{path.stem}.shard-{rank:05d}-of-{world:05d}{path.suffix}")


@renamed_kwarg("generator", "model")
def export_sharded(model: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Export under ``torch.distributed``: each rank writes its own shard file, then rank 0
    writes ``path`` as a master file whose datasets are HDF5 virtual datasets over the shards.

    Run under ``torchrun --nproc-per-node K`` (CLI: ``genaug export --distributed``).
    """
    import torch.distributed as dist

    path = Path(path)
    rank, world = dist.get_rank(), dist.get_world_size()
    if path.exists() and not kwargs.get("overwrite", False):
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    with contextlib.ExitStack() as stack:
        refused = [None]
        if rank == 0:  # rank 0 holds the master's lock for the whole export and tells the others
            try:
                stack.enter_context(output_lock(path))
            except OutputInUseError as err:
                refused = [str(err)]
        dist.broadcast_object_list(refused, src=0)
        if refused[0] is not None:
            raise OutputInUseError(16, refused[0])
        shard = shard_path(path, rank, world)
        export_hdf5(model, shard, shard=(rank, world),
                    **{**kwargs, "overwrite": True, "progress": kwargs.get("progress", True) and rank == 0})
        dist.barrier()
        if rank == 0:
            write_master(path, [shard_path(path, r, world) for r in range(world)])
        dist.barrier()
    return path


_SHARD_IDENTITY = ("plan_sha256", "generator_sha256", "seed", "batch_size", "truncation", "amp")


def _shard_identity(attrs: dict[str, Any]) -> dict[str, Any]:
    """What a master file records of one shard, and checks on reading: the export's plan, seed and
    generator hash, the shard's index and its item range."""
    ident = {k: attrs[k].item() if hasattr(attrs[k], "item") else attrs[k] for k in _SHARD_IDENTITY if k in attrs}
    ident["shard"] = [int(v) for v in attrs.get("shard", [])]
    ident["item_range"] = [int(v) for v in attrs.get("item_range", [])]
    return ident


def _open_shard(s: Path, master: Path) -> h5py.File:
    if not s.is_file():
        raise ValueError(f"{master}: shard file {s.name} is missing")
    try:
        return h5py.File(s, "r")
    except OSError as err:
        raise ValueError(f"{master}: shard file {s.name} is unreadable (truncated or damaged: {err})") from None


def write_master(path: Path, shards: list[Path]) -> Path:
    """A master file of virtual datasets over complete shard files (relative paths)."""
    metas = []
    for s in shards:
        with _open_shard(s, path) as f:
            check_schema(f, s)
            metas.append((dict(f.attrs), {k: (f[k].shape, f[k].dtype) for k in f}))
    idents = [_shard_identity(m[0]) for m in metas]
    at = 0
    for i, (s, ident) in enumerate(zip(shards, idents, strict=True)):
        if ident["shard"] and ident["shard"] != [i, len(shards)]:
            raise ValueError(f"{s}: expected shard {i} of {len(shards)}, the file says shard "
                             f"{ident['shard'][0]} of {ident['shard'][1]}")
        for k in ("generator_sha256", "seed", "batch_size", "truncation", "amp"):
            if ident.get(k) != idents[0].get(k):
                raise ValueError(f"{s}: {k} is {ident.get(k)!r}, shard 0 has {idents[0].get(k)!r}; "
                                 "the shards come from different exports")
        if ident["item_range"] and ident["item_range"][0] != at:
            raise ValueError(f"{s}: expected items from {at}, the shard starts at {ident['item_range'][0]}")
        at = ident["item_range"][1] if ident["item_range"] else at
    total = sum(m[1]["images"][0][0] for m in metas)
    names = list(metas[0][1])

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for name in names:
                shape, dtype = metas[0][1][name]
                layout = h5py.VirtualLayout(shape=(total, *shape[1:]), dtype=dtype)
                at = 0
                for s, (_, dsets) in zip(shards, metas, strict=True):
                    m = dsets[name][0][0]
                    if m:  # an empty shard adds nothing
                        layout[at : at + m] = h5py.VirtualSource(s.name, name, shape=dsets[name][0])
                    at += m
                f.create_virtual_dataset(name, layout)
            attrs = dict(metas[0][0])
            counts = sum(np.asarray(m[0]["class_counts"]) for m in metas)
            attrs.update(class_counts=counts, shards=json.dumps([s.name for s in shards]),
                         shard_identity=json.dumps(idents), item_range=np.array([0, total], dtype=np.int64))
            for k in ("plan_sha256", "blocks_done", "complete", "shard"):
                attrs.pop(k, None)
            for k, v in attrs.items():
                f.attrs[k] = v
            f.attrs["complete"] = True

    atomic_write(path, write)
    return path


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _write_attrs(f: h5py.File, model: Any, labels: np.ndarray, **info: Any) -> None:
    card = model.card()
    counts = np.bincount(labels, minlength=model.num_classes)
    attrs = {
        "schema_version": SCHEMA_VERSION,
        "genaug_version": __version__,
        "torch_version": torch.__version__.split("+")[0],
        "h5py_version": h5py.__version__,
        "generator_family": card["family"],
        "generator_name": info["generator_name"] or "",
        "generator_config": json.dumps(card),
        "generator_sha256": info["sha"],
        "seed": info["seed"],
        "batch_size": info["batch_size"],
        "truncation": info["truncation"],
        "amp": info["amp"],  # "bf16": sampled under bf16 autocast (BaseGenerator.set_amp)
        "classes": json.dumps(list(model.classes)),
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
        try:
            f = h5py.File(self.path, "r")
        except OSError as err:
            raise ValueError(f"{self.path}: not a readable HDF5 file (truncated or damaged: {err})") from None
        with f:
            self.attrs = check_schema(f, self.path)
            self.targets = torch.from_numpy(f["labels"][()])
            self._shape = f["images"].shape
        self.classes = json.loads(self.attrs["classes"])
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return self._shape[0]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as a uint8 tensor (N, C, H, W) and the int64 labels, read at once."""
        with h5py.File(self.path, "r") as f:
            images = torch.from_numpy(f["images"][()])
        return (images.unsqueeze(1) if images.ndim == 3 else images), self.targets.long()

    def _images(self) -> h5py.Dataset:
        if self._file is None:  # opened in the process that reads, never before a fork
            self._file = h5py.File(self.path, "r", rdcc_nbytes=_CHUNK_CACHE_BYTES, rdcc_nslots=_CHUNK_CACHE_SLOTS)
        return self._file["images"]

    def _item(self, img: torch.Tensor, index: int) -> tuple[Any, Any]:
        if img.ndim == 2:
            img = img.unsqueeze(0)
        target = int(self.targets[index])
        return apply_transforms(img, target, self.transform, self.target_transform)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        return self._item(torch.from_numpy(self._images()[index]), index)

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, Any]]:
        """Batched read for DataLoader: one slice per run of touched chunks, not one read per item."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            bad = idx[(idx < -len(self)) | (idx >= len(self))][0]
            raise IndexError(f"index {int(bad)} out of range for {len(self)} items")
        idx %= max(len(self), 1)
        block, inverse = read_rows(self._images(), idx)
        block = torch.from_numpy(block)
        return [self._item(block[j], int(i)) for i, j in zip(idx, inverse, strict=True)]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}\n    Number of datapoints: {len(self)}\n    File: {self.path}\n"
            f"    Generator: {self.attrs.get('generator_family')} {self.attrs.get('generator_name')}"
        )


#: Chunk cache of each open reader (HDF5's default is 1 MiB): a shuffled epoch touches every chunk many
#: times, and a cached chunk is decompressed once. Slots follow HDF5's advice of about 100 per cached chunk.
_CHUNK_CACHE_BYTES = 64 * 2**20
_CHUNK_CACHE_SLOTS = 1_600_033  # prime


def read_rows(ds: h5py.Dataset, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``idx`` of ``ds`` in as few reads as the chunking allows.

    Returns ``(block, inverse)`` with ``block[inverse[k]] == ds[idx[k]]``. The sorted distinct
    rows are split where two of them lie in chunks that are not neighbours; each run is read as
    one slice, so each touched chunk is decompressed once and no h5py point selection is built.
    """
    uniq, inverse = np.unique(idx, return_inverse=True)
    if uniq.size == 0:
        return np.empty((0, *ds.shape[1:]), dtype=ds.dtype), inverse
    rows = (ds.chunks or (1,))[0]
    cid = uniq // rows
    cuts = np.flatnonzero(np.diff(cid) > 1) + 1
    starts = np.concatenate(([0], cuts))
    stops = np.concatenate((cuts, [uniq.size]))
    block = np.empty((uniq.size, *ds.shape[1:]), dtype=ds.dtype)
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        lo, hi = int(uniq[a]), int(uniq[b - 1]) + 1
        run = ds[lo:hi]
        block[a:b] = run[uniq[a:b] - lo]
    return block, inverse


def check_schema(f: h5py.File, path: Path) -> dict[str, Any]:
    attrs = dict(f.attrs)
    if attrs.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{path}: expected schema_version {SCHEMA_VERSION}, got {attrs.get('schema_version')!r}")
    if not bool(attrs.get("complete", False)):
        raise ValueError(f"{path}: the file is incomplete (attribute complete is not True)")
    for name, dtype in (("images", np.uint8), ("labels", np.int64)):
        if name not in f:
            raise ValueError(f"{path}: expected a dataset {name!r}, got datasets {sorted(f)}")
        if f[name].dtype != dtype:
            raise ValueError(f"{path}: dataset {name!r} must be {np.dtype(dtype)}, got {f[name].dtype}")
    classes = attrs.get("classes")
    try:
        names = json.loads(classes) if isinstance(classes, str) else None
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
        raise ValueError(f"{path}: attribute 'classes' must be a JSON list of class names (a string), "
                         f"got {type(classes).__name__} {str(classes)[:60]!r}")
    if "shards" in attrs:
        _check_shards(path, attrs)
    if f["images"].shape[0] != f["labels"].shape[0]:
        raise ValueError(
            f"{path}: images and labels differ in length ({f['images'].shape[0]} vs {f['labels'].shape[0]})"
        )
    return attrs


def _check_shards(path: Path, attrs: dict[str, Any]) -> None:
    """Every shard of a master file is present, readable and the one the master was written with."""
    names = json.loads(attrs["shards"])
    missing = [s for s in names if not (path.parent / s).is_file()]
    if missing:
        raise ValueError(f"{path}: shard file(s) {missing} of this master file are missing")
    recorded = json.loads(attrs["shard_identity"]) if "shard_identity" in attrs else None
    for i, name in enumerate(names):
        with _open_shard(path.parent / name, path) as f:
            if recorded is None:
                continue
            found = _shard_identity(dict(f.attrs))
            diff = sorted(k for k in recorded[i] if recorded[i][k] != found.get(k))
            if diff:
                raise ValueError(
                    f"{path}: shard file {name} is not the one this master was written with ({', '.join(diff)} "
                    "differ); it may come from another export"
                )
