"""Training: one family-agnostic loop, a recipe per objective, resumable, observable and distributed."""

from genaug.registry import Preset, register_preset, register_recipe
from genaug.train.config import PRESETS, FamilyPreset, TrainConfig, list_training_families
from genaug.train.recipes import Recipe, RecipeConfig
from genaug.train.recipes.base import TrainingInterrupted
from genaug.train.trainer import NonFiniteLossError, Trainer, TrainResult, prepare_data

__all__ = [
    "PRESETS",
    "FamilyPreset",
    "NonFiniteLossError",
    "Preset",
    "Recipe",
    "RecipeConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "Trainer",
    "list_training_families",
    "prepare_data",
    "register_preset",
    "register_recipe",
]
