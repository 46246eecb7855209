"""Registries: generator families (how to rebuild one from its card) and named generators.

A new model family plugs in with :func:`register_family`; datasets and
transforms never change. Names refuse duplicates.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genaug.generators.base import BaseGenerator
from genaug.generators.wrappers import GANGenerator, VAEGenerator, build_filtered, build_labelled, build_mixture
from genaug.models import VAE, make_config

_FAMILIES: dict[str, Callable[[dict[str, Any]], BaseGenerator]] = {}
_NAMED: dict[str, Path] = {}
BUNDLED_DIR = Path(__file__).parent / "weights"


def register_family(name: str, build: Callable[[dict[str, Any]], BaseGenerator]) -> None:
    """Register how to build a generator of family ``name`` (fresh weights) from its card."""
    if name in _FAMILIES:
        raise ValueError(f"generator family {name!r} is already registered")
    _FAMILIES[name] = build


def list_families() -> list[str]:
    """Names of the generator families that checkpoints can use."""
    return sorted(_FAMILIES)


def build_from_card(card: dict[str, Any]) -> BaseGenerator:
    family = card.get("family")
    if family not in _FAMILIES:
        raise ValueError(f"unknown generator family {family!r}; known families: {list_families()}")
    return _FAMILIES[family](card)


def register_generator(name: str, path: str | os.PathLike[str]) -> None:
    """Make the saved generator at ``path`` loadable by ``name``.

    Example:
        >>> register_generator("my-cvae", "runs/cvae")  # doctest: +SKIP
        >>> load_generator("my-cvae")  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in _NAMED:
        raise ValueError(f"a generator named {name!r} is already registered (at {_NAMED[name]})")
    _NAMED[name] = Path(path)


def list_generators() -> list[str]:
    """Names accepted by :func:`load_generator` (bundled and registered generators)."""
    return sorted(_NAMED)


def load_generator(name_or_path: str | os.PathLike[str], *, device: Any = "cpu") -> BaseGenerator:
    """Load a generator by registered name, or from a folder / ``.safetensors`` file pair.

    Only safetensors and JSON are read; nothing is unpickled.

    Example:
        >>> import genaug, torch
        >>> gen = genaug.load_generator("runs/cvae")  # doctest: +SKIP
        >>> gen.sample(torch.arange(10)).shape  # doctest: +SKIP
        torch.Size([10, 1, 28, 28])
    """
    from genaug.checkpoint import load_generator_from_path
    from genaug.device import get_device

    key = os.fspath(name_or_path)
    path = _NAMED.get(key, Path(key))
    if not path.exists():
        raise FileNotFoundError(
            f"no generator named {key!r} and no such file or folder; "
            f"registered names: {list_generators()}"
        )
    return load_generator_from_path(path).to(get_device(device))


def _build_vae(card: dict[str, Any]) -> BaseGenerator:
    return VAEGenerator(VAE(make_config("vae", card["config"])), classes=card["classes"])


def _gan_builder(family: str) -> Callable[[dict[str, Any]], BaseGenerator]:
    def build(card: dict[str, Any]) -> BaseGenerator:
        return GANGenerator.from_config(
            family, make_config(family, card["config"]), classes=card["classes"]
        )

    return build


def bundled_path(name: str) -> Path:
    """Folder of a model bundled with genaug (e.g. ``"mnist-cdcgan"`` or the judge ``"mnist-judge"``)."""
    folder = BUNDLED_DIR / name
    if not (folder / "config.json").is_file():
        names = sorted(p.parent.name for p in BUNDLED_DIR.glob("*/config.json"))
        raise FileNotFoundError(f"no bundled model named {name!r}; bundled: {names}")
    return folder


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A bundled model's folder for a bundled name, else the path itself."""
    key = os.fspath(name_or_path)
    if (BUNDLED_DIR / key / "config.json").is_file() and not Path(key).exists():
        return BUNDLED_DIR / key
    return Path(key)


def _register_bundled() -> None:
    """Bundled generators (cards without a ``part``) become loadable by their folder name."""
    import json

    for config in sorted(BUNDLED_DIR.glob("*/config.json")):
        if "part" not in json.loads(config.read_text()):
            register_generator(config.parent.name, config.parent)


register_family("vae", _build_vae)
for _family in ("gan", "dcgan", "began"):
    register_family(_family, _gan_builder(_family))
register_family("labelled", build_labelled)
register_family("filtered", build_filtered)
register_family("mixture", build_mixture)
_register_bundled()
