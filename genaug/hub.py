"""Load generators by name or path: a name lookup followed by ``from_pretrained``.

Example:
    >>> import genaug, torch
    >>> gen = genaug.load_generator("mnist-cvae")
    >>> gen.sample(torch.arange(3), generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 1, 28, 28])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genaug.device import get_device
from genaug.generators.base import BaseGenerator
from genaug.generators.stored import StoredSamples
from genaug.registry import (
    BUNDLED_DIR,
    NAMED,
    bundled_path,
    list_generators,
    register_generator,
    resolve_model_path,
)

__all__ = ["BUNDLED_DIR", "bundled_path", "list_generators", "load_generator", "register_generator",
           "resolve_model_path"]


def load_generator(name_or_path: str | os.PathLike[str], *, device: Any = "cpu") -> BaseGenerator:
    """Load a generator by registered name, or from a folder / ``.safetensors`` file pair.

    Only safetensors and JSON are read; nothing is unpickled. An ``.h5`` / ``.hdf5`` file written
    by ``genaug export`` loads as :class:`~genaug.generators.StoredSamples`: a generator that
    draws from the stored samples (a slow generator, sampled once, mixed in on the fly).

    Example:
        >>> gen = load_generator("runs/cvae", device="auto")  # doctest: +SKIP
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a registered name or a path, got {type(name_or_path).__name__}")
    key = os.fspath(name_or_path)
    if not isinstance(key, str) or not key:
        raise ValueError(f"name_or_path must be a non-empty name or path, got {name_or_path!r}")
    path = NAMED.get(key, Path(key))
    if not path.exists():
        raise FileNotFoundError(
            f"no generator named {key!r} and no such file or folder; registered names: {list_generators()}"
        )
    if path.is_file() and path.suffix.lower() in (".h5", ".hdf5"):
        return StoredSamples.from_hdf5(path).to(get_device(device))
    return BaseGenerator.from_pretrained(path).to(get_device(device))
