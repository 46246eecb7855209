"""File I/O for shareable weights (safetensors + JSON card) and training checkpoints (a leaf).

A shareable model is a folder holding ``model.safetensors`` and ``config.json`` (or a
``NAME.safetensors`` / ``NAME.json`` pair). Reading touches only safetensors and JSON, never a
pickle, and refuses with a :class:`CheckpointError` naming the file and the reason. Training
checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import secrets
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genaug._version import __version__

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")


class CheckpointError(ValueError):
    """A generator file that genaug refuses to load."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class DiskFullError(OSError):
    """The disk filled up while writing; whatever the file replaces is left intact."""


class OutputInUseError(OSError):
    """Another process is writing the same output."""


def _is_disk_full(err: BaseException, folder: Path) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save and h5py report a failed write without an errno: look at the disk itself.
    return isinstance(err, (RuntimeError, OSError)) and free_bytes(folder) < 2**20


def free_bytes(folder: Path) -> int:
    """Free space (bytes) on the filesystem holding ``folder`` (or its nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def disk_full_error(path: Path, *, kept: str) -> DiskFullError:
    free = free_bytes(path.parent) / 2**20
    return DiskFullError(errno.ENOSPC, f"{path}: the disk is full ({free:.1f} MiB free); {kept}")


def _create_temp(folder: Path, name: str, suffix: str) -> Path:
    """A new empty file beside ``name``, created with mode 0o666 less the umask (as ``open`` does),
    not tempfile's 0o600, so the renamed result is readable by whoever may read the folder."""
    for _ in range(100):
        tmp = folder / f".{name}.{secrets.token_hex(6)}{suffix}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{folder}: cannot create a temporary file for {name}")


def atomic_write(path: Path, write: Any, *, suffix: str = "") -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file.

    On a full disk the temporary file is removed, ``path`` is left as it was and a
    :class:`DiskFullError` names it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path.parent, path.name, suffix)
    mode = stat.S_IMODE(tmp.stat().st_mode)  # 0o666 less the umask
    try:
        write(tmp)
        os.chmod(tmp, mode)  # some writers (safetensors) replace the file with a 0o600 one
        os.replace(tmp, path)
    except BaseException as err:
        full = _is_disk_full(err, path.parent)
        tmp.unlink(missing_ok=True)
        if full:
            kept = "the previous file is intact" if path.exists() else "nothing was written"
            raise disk_full_error(path, kept=kept) from None
        raise


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 200).decode(errors="replace").strip() or "unknown process"
    except OSError:
        return "unknown process"


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on writing ``path`` (a lock file ``.NAME.lock`` beside it).

    A second writer is refused at once with an :class:`OutputInUseError` that names the
    process holding the lock. The lock goes with the process, so a killed writer never
    leaves a stale lock behind.
    """
    path = Path(path)
    lock = path.parent / f".{path.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _try_lock(fd)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputInUseError(
                errno.EBUSY, f"{path}: another genaug process ({holder}) is writing it; wait for it to "
                "finish or choose another output"
            ) from None
        try:  # a previous holder may have removed the lock file between our open and lock
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)  # closing releases the lock


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def check_output_path(path: str | os.PathLike[str], *, name: str, overwrite: bool = False,
                      kind: str = "file", overwrite_hint: str = "overwrite=True") -> Path:
    """Refuse an output path before any long work: one that exists (unless ``overwrite``), a
    folder where a file is expected (or the reverse), or one in a folder that can't be written.

    Nothing is created. ``name`` (a flag or argument name) and ``overwrite_hint`` go in the message.
    """
    path = Path(path)
    if path.exists():
        if kind == "file" and path.is_dir():
            raise ValueError(f"{name} {path}: expected a file path, got a folder")
        if kind == "folder" and not path.is_dir():
            raise ValueError(f"{name} {path}: expected a folder, got a file")
        if not overwrite:
            raise FileExistsError(f"{name} {path}: exists; pass {overwrite_hint} to replace it")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {path}: cannot be created, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{name} {path}: the folder {parent} is not writable")
    if parent == path.parent:
        try:  # os.access says yes to root even on a read-only filesystem: try it
            with tempfile.TemporaryFile(dir=parent):
                pass
        except OSError as err:
            raise PermissionError(errno.EACCES, f"{name} {path}: cannot write in {parent} ({err.strerror})") from None
    return path


def write_weights_and_card(folder: str | os.PathLike[str], module: torch.nn.Module, card: dict[str, Any],
                           *, provenance: dict[str, Any] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``module``'s weights as safetensors and ``card`` (plus format, hash and provenance)
    as JSON in ``folder``; each file is replaced atomically.

    ``dtype``: store the floating-point weights in this floating-point dtype (e.g.
    ``torch.float16``: half the bytes of float32); loading casts them back to the model's own.
    A weight that the dtype cannot hold (overflow to inf) is refused before anything is written.
    """
    folder = Path(folder)
    weights = folder / WEIGHTS_NAME
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    if dtype is not None:
        state = _cast_floating(state, dtype)
    atomic_write(weights, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    full = {
        "genaug_format": FORMAT_VERSION,
        **card,
        "weights_sha256": sha256_file(weights),
        "provenance": {"genaug_version": __version__, **(provenance or {})},
    }
    text = json.dumps(full, indent=2)
    atomic_write(folder / CONFIG_NAME, lambda p: p.write_text(text + "\n"))
    return folder


def _cast_floating(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype (e.g. torch.float16), got {dtype!r}")
    out, overflow = {}, []
    for key, value in state.items():
        if value.is_floating_point():
            cast = value.to(dtype)
            if bool(torch.isfinite(value).all()) and not bool(torch.isfinite(cast).all()):
                overflow.append(key)
            value = cast
        out[key] = value
    if overflow:
        raise ValueError(f"weights {overflow} exceed the range of {dtype}; save them in a wider dtype")
    return out


def creation_provenance() -> dict[str, Any]:
    """Library versions and the time, recorded in a generator card."""
    return {
        "torch_version": torch.__version__.split("+")[0],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def read_weights_and_card(path: str | os.PathLike[str], *, required: tuple[str, ...]
                          ) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path, Path]:
    """``(state, card, weights_path, config_path)`` of a saved folder or file pair, checked."""
    weights_path, config_path = resolve_files(Path(path))
    card = read_card(config_path, required=required)
    state = read_weights(weights_path, expected_sha256=card.get("weights_sha256"))
    return state, card, weights_path, config_path


def resolve_files(path: Path) -> tuple[Path, Path]:
    if path.is_dir():
        return path / WEIGHTS_NAME, path / CONFIG_NAME
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    if path.suffix == ".json":
        return path.with_suffix(".safetensors"), path
    _refuse_if_pickle(path)
    raise CheckpointError(
        f"{path}: expected a folder with {WEIGHTS_NAME} and {CONFIG_NAME}, or a .safetensors "
        f"file with a .json beside it; got a file with suffix {path.suffix!r}"
    )


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    # safetensors: u64 little-endian header length, then a JSON header starting with "{".
    return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8


def _refuse_if_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(9)
    if _looks_like_safetensors(head, path.stat().st_size):
        return
    if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04" or path.suffix in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: looks like a pickle / torch.save file; genaug loads shareable generators "
            "only from safetensors + JSON, because unpickling can run arbitrary code"
        )


def read_card(
    config_path: Path, *, required: tuple[str, ...] = ("family", "config", "classes")
) -> dict[str, Any]:
    if not config_path.is_file():
        raise CheckpointError(f"{config_path}: config file is missing (expected a folder holding {WEIGHTS_NAME} "
                              f"and {CONFIG_NAME}, as save_pretrained writes)")
    try:
        card = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path}: not valid JSON ({err})") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object, got {type(card).__name__}")
    version = card.get("genaug_format")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: expected genaug_format {FORMAT_VERSION}, got {version!r}"
        )
    for key in required:
        if key not in card:
            raise CheckpointError(f"{config_path}: expected the key {key!r} in the card, got keys {sorted(card)}")
    return card


def read_weights(weights_path: Path, *, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file is missing (expected it beside {CONFIG_NAME})")
    _refuse_if_pickle(weights_path)
    if expected_sha256 is not None and sha256_file(weights_path) != expected_sha256:
        raise CheckpointError(
            f"{weights_path}: sha256 does not match the one in the config (truncated or modified file)"
        )
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{weights_path}: truncated or corrupt safetensors file ({err})") from None


def check_state(
    module: torch.nn.Module, state: dict[str, torch.Tensor], *, source: Path
) -> None:
    """Refuse missing/unexpected keys, shape mismatches and non-finite weights, listing each."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatches [{'; '.join(shapes)}]")
    if problems:
        raise CheckpointError(f"{source}: weights do not fit the config: {', '.join(problems)}")
    bad = sorted(
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    )
    if bad:
        raise CheckpointError(f"{source}: non-finite values (NaN or inf) in weights {bad}")


def save_training_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Atomically write a training checkpoint (tensors, numbers, strings, dicts and lists only)."""
    atomic_write(Path(path), lambda p: torch.save(state, p))


def load_training_checkpoint(path: str | os.PathLike[str], *, mmap: bool = False) -> dict[str, Any]:
    """Load a training checkpoint with ``weights_only=True`` (no arbitrary unpickling).

    ``mmap=True`` maps the file instead of reading it: tensors are read only when touched, so a look
    at the settings stays cheap however large the weights are.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - torch raises several types for bad files
        raise CheckpointError(f"{path}: cannot load training checkpoint ({err})") from None
