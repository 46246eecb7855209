"""Model families (``nn.Module`` only, no training loops), each built from one config dataclass.

Example:
    >>> from genaug.models import build_model
    >>> vae = build_model("vae", {"num_classes": 10})
    >>> type(vae).__name__
    'VAE'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from genaug.models.autoencoder import VAE, AutoencoderConfig, ConvAutoencoder, VAEConfig
from genaug.models.classifier import Classifier, ClassifierConfig
from genaug.models.config import ModelConfig
from genaug.models.gan import (
    BEGAN,
    DCGAN,
    GAN,
    BEGANConfig,
    DCGANConfig,
    GANConfig,
)
from genaug.models.layers import MinibatchDiscrimination
from genaug.models.ssgan import SemiSupervisedGAN, SSGANConfig


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config_cls: type[ModelConfig]
    model_cls: type[nn.Module]


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, config_cls: type[ModelConfig], model_cls: type[nn.Module]) -> None:
    """Register a model family under ``name``; a name can be registered once."""
    if name in _MODELS:
        raise ValueError(f"model family {name!r} is already registered")
    _MODELS[name] = ModelSpec(name, config_cls, model_cls)


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; known families: {list_models()}") from None


def make_config(name: str, config: ModelConfig | dict[str, Any] | None = None) -> ModelConfig:
    spec = get_model_spec(name)
    if config is None:
        return spec.config_cls()
    if isinstance(config, dict):
        return spec.config_cls.from_dict(config)
    if not isinstance(config, spec.config_cls):
        raise ValueError(
            f"model family {name!r} expects a {spec.config_cls.__name__}, "
            f"got {type(config).__name__}"
        )
    return config


def build_model(name: str, config: ModelConfig | dict[str, Any] | None = None) -> nn.Module:
    """Build the model family ``name`` from a config object or dict (defaults if None)."""
    spec = get_model_spec(name)
    return spec.model_cls(make_config(name, config))


register_model("autoencoder", AutoencoderConfig, ConvAutoencoder)
register_model("vae", VAEConfig, VAE)
register_model("gan", GANConfig, GAN)
register_model("dcgan", DCGANConfig, DCGAN)
register_model("began", BEGANConfig, BEGAN)
register_model("classifier", ClassifierConfig, Classifier)
register_model("ssgan", SSGANConfig, SemiSupervisedGAN)

__all__ = [
    "AutoencoderConfig",
    "BEGAN",
    "BEGANConfig",
    "Classifier",
    "ClassifierConfig",
    "ConvAutoencoder",
    "DCGAN",
    "DCGANConfig",
    "GAN",
    "GANConfig",
    "MinibatchDiscrimination",
    "ModelConfig",
    "VAE",
    "VAEConfig",
    "build_model",
    "get_model_spec",
    "list_models",
    "make_config",
    "register_model",
    "SemiSupervisedGAN",
    "SSGANConfig",
]
