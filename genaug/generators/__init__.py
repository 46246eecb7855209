"""Generator wrappers implementing :class:`Generator`, each registered with its card family."""

from genaug.generators.base import BaseGenerator, Generator, SamplingError
from genaug.generators.diffusion import DiffusionGenerator
from genaug.generators.gan import GANGenerator
from genaug.generators.prior import LatentPriorConfig, LatentPriorGenerator, fit_latent_prior
from genaug.generators.stored import StoredSamples
from genaug.generators.vae import VAEGenerator
from genaug.generators.wrappers import (
    FilterConfig,
    FilteredGenerator,
    LabelledConfig,
    LabelledGenerator,
    MixtureConfig,
    MixtureGenerator,
    RelabelledConfig,
    RelabelledGenerator,
    match_classes,
    with_sampling,
)

__all__ = [
    "BaseGenerator",
    "DiffusionGenerator",
    "FilterConfig",
    "FilteredGenerator",
    "GANGenerator",
    "Generator",
    "LabelledConfig",
    "LabelledGenerator",
    "LatentPriorConfig",
    "LatentPriorGenerator",
    "MixtureConfig",
    "MixtureGenerator",
    "RelabelledConfig",
    "RelabelledGenerator",
    "SamplingError",
    "StoredSamples",
    "VAEGenerator",
    "fit_latent_prior",
    "match_classes",
    "with_sampling",
]
