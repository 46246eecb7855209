"""Model families (``nn.Module`` only, no training loops), each built from one config dataclass.

Every family registers itself where it is defined, with
:func:`~genaug.registry.register_model`. Encoders and discriminators say what their features
are: ``feature_extractor()`` returns a module from images (in the model's ``input_range``) to
``out_features`` features, with no class given; :mod:`genaug.pretrain` builds classifiers on it.

Example:
    >>> from genaug.models import build_model
    >>> vae = build_model("vae", {"num_classes": 10})
    >>> type(vae).__name__
    'VAE'
"""

from __future__ import annotations

from genaug.models.autoencoder import VAE, AutoencoderConfig, ConvAutoencoder, VAEConfig
from genaug.models.classifier import Classifier, ClassifierConfig
from genaug.models.config import ModelConfig
from genaug.models.diffusion import DiffusionConfig, DiffusionUNet
from genaug.models.gan import (
    BEGAN,
    DCGAN,
    GAN,
    BEGANConfig,
    DCGANConfig,
    GANConfig,
    GANModel,
)
from genaug.models.layers import MinibatchDiscrimination
from genaug.models.ssgan import SemiSupervisedGAN, SSGANConfig
from genaug.registry import ModelSpec, build_model, get_model_spec, list_models, make_config, register_model

__all__ = [
    "AutoencoderConfig",
    "BEGAN",
    "BEGANConfig",
    "Classifier",
    "ClassifierConfig",
    "ConvAutoencoder",
    "DCGAN",
    "DCGANConfig",
    "DiffusionConfig",
    "DiffusionUNet",
    "GAN",
    "GANConfig",
    "GANModel",
    "MinibatchDiscrimination",
    "ModelConfig",
    "ModelSpec",
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
