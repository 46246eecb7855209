"""Training recipes, one file per objective; each registers itself and its presets.

A new objective is a file like these: a config dataclass (a :class:`RecipeConfig`), a
:class:`Recipe` subclass registered with :func:`~genaug.registry.register_recipe`, and its
presets (:func:`~genaug.registry.register_preset`).
"""

from genaug.train.recipes.base import OneNetworkRecipe, Recipe, RecipeConfig
from genaug.train.recipes.began import BEGANRecipe, BEGANTrainConfig
from genaug.train.recipes.diffusion import DiffusionRecipe, DiffusionTrainConfig
from genaug.train.recipes.gan import (
    AdversarialRecipe,
    GANRecipe,
    GANTrainConfig,
    GradientPenalty,
    NoConstraint,
    NonSaturatingLoss,
    WassersteinLoss,
    WeightClipping,
)
from genaug.train.recipes.reconstruction import ReconstructionConfig, ReconstructionRecipe
from genaug.train.recipes.ssgan import SemiSupervisedConfig, fit_semi_supervised_gan
from genaug.train.recipes.vae import VAERecipe, VAETrainConfig

__all__ = [
    "AdversarialRecipe",
    "BEGANRecipe",
    "BEGANTrainConfig",
    "DiffusionRecipe",
    "DiffusionTrainConfig",
    "GANRecipe",
    "GANTrainConfig",
    "GradientPenalty",
    "NoConstraint",
    "NonSaturatingLoss",
    "OneNetworkRecipe",
    "Recipe",
    "RecipeConfig",
    "ReconstructionConfig",
    "ReconstructionRecipe",
    "SemiSupervisedConfig",
    "VAERecipe",
    "VAETrainConfig",
    "WassersteinLoss",
    "WeightClipping",
    "fit_semi_supervised_gan",
]
