"""Shareable generator and model files (safetensors + JSON) and safe training checkpoints.

The file handling itself lives in :mod:`genaug._io`; generators save and load with
``save_pretrained`` / ``from_pretrained``. This module keeps the part-file helpers (an
autoencoder, a discriminator, a classifier saved on its own) and the earlier names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from genaug._deprecation import warn_deprecated
from genaug._io import (
    CONFIG_NAME,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    CheckpointError,
    atomic_write,
    check_state,
    load_training_checkpoint,
    read_card,
    read_weights,
    read_weights_and_card,
    save_training_checkpoint,
    write_weights_and_card,
)
from genaug.generators.base import BaseGenerator
from genaug.registry import build_model

__all__ = [
    "CONFIG_NAME", "FORMAT_VERSION", "WEIGHTS_NAME", "CheckpointError", "atomic_write", "check_state",
    "load_generator_from_path", "load_module", "load_training_checkpoint", "read_card", "read_weights",
    "save_generator", "save_module", "save_training_checkpoint",
]


def save_module(
    module: torch.nn.Module,
    family: str,
    config: Any,
    path: str | os.PathLike[str],
    *,
    part: str = "model",
    provenance: dict | None = None,
) -> Path:
    """Save a plain model (or one part of it, e.g. a discriminator) as safetensors + JSON."""
    card = {"family": family, "part": part, "config": config.to_dict()}
    return write_weights_and_card(path, module, card, provenance=provenance)


def load_module(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a model saved by :func:`save_module`; returns ``(module, card)``."""
    state, card, weights_path, config_path = read_weights_and_card(path, required=("family", "config"))
    if "part" not in card:
        what = f"a generator's card (family {card['family']!r})" if "classes" in card else "a card without 'part'"
        raise CheckpointError(f"{config_path}: expected a module saved with save_module (a card with 'part'), "
                              f"got {what}; load generators with genaug.load_generator")
    try:
        model = build_model(card["family"], card["config"])
        module = model if card["part"] == "model" else getattr(model, card["part"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{config_path}: cannot build the model ({err})") from None
    check_state(module, state, source=weights_path)
    module.load_state_dict(state, strict=True)
    return module.eval(), card


def save_generator(gen: BaseGenerator, path: str | os.PathLike[str], *, provenance: dict | None = None) -> Path:
    """Deprecated: ``gen.save_pretrained(path)``."""
    warn_deprecated("genaug.checkpoint.save_generator(gen, path)", "gen.save_pretrained(path)")
    return gen.save_pretrained(path, provenance=provenance)


def load_generator_from_path(path: str | os.PathLike[str]) -> BaseGenerator:
    """Deprecated: ``BaseGenerator.from_pretrained(path)`` (or :func:`genaug.load_generator`)."""
    warn_deprecated("genaug.checkpoint.load_generator_from_path(path)", "BaseGenerator.from_pretrained(path)")
    return BaseGenerator.from_pretrained(path)
