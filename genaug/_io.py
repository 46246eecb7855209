"""File I/O for shareable weights (safetensors + JSON card) and training checkpoints (a leaf).

A shareable model is a folder holding ``model.safetensors`` and ``config.json`` (or a
``NAME.safetensors`` / ``NAME.json`` pair). Reading touches only safetensors and JSON, never a
pickle, and refuses with a :class:`CheckpointError` naming the file and the reason. Training
checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
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


def atomic_write(path: Path, write: Any, *, suffix: str = "") -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix + ".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_weights_and_card(folder: str | os.PathLike[str], module: torch.nn.Module, card: dict[str, Any],
                           *, provenance: dict[str, Any] | None = None) -> Path:
    """Write ``module``'s weights as safetensors and ``card`` (plus format, hash and provenance)
    as JSON in ``folder``; each file is replaced atomically."""
    folder = Path(folder)
    weights = folder / WEIGHTS_NAME
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
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
        raise CheckpointError(f"{config_path}: config file is missing")
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
            raise CheckpointError(f"{config_path}: required key {key!r} is missing")
    return card


def read_weights(weights_path: Path, *, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file is missing")
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


def load_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a training checkpoint with ``weights_only=True`` (no arbitrary unpickling)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - torch raises several types for bad files
        raise CheckpointError(f"{path}: cannot load training checkpoint ({err})") from None
