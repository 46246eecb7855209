"""Training: one loop, a step per family, resumable, observable and distributed."""

from genaug.train.config import PRESETS, FamilyPreset, TrainConfig, list_training_families
from genaug.train.trainer import NonFiniteLossError, Trainer, TrainResult, prepare_data

__all__ = [
    "PRESETS",
    "FamilyPreset",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "list_training_families",
    "prepare_data",
]
