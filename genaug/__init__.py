"""genaug: generative data augmentation for PyTorch.

Trained VAE decoders and conditional GANs become class-labelled sources of
synthetic images behind one small :class:`Generator` interface.

Example:
    >>> import genaug
    >>> "vae" in genaug.list_families()
    True
"""

from genaug._io import CheckpointError, DiskFullError, OutputInUseError
from genaug._version import __version__
from genaug.device import get_device
from genaug.generators import (
    BaseGenerator,
    DiffusionGenerator,
    GANGenerator,
    Generator,
    LabelledGenerator,
    LatentPriorGenerator,
    MixtureGenerator,
    RelabelledGenerator,
    SamplingError,
    StoredSamples,
    VAEGenerator,
    fit_latent_prior,
    match_classes,
)
from genaug.hub import load_generator
from genaug.models import build_model, list_models, register_model
from genaug.registry import (
    list_families,
    list_generators,
    list_presets,
    list_recipes,
    register_family,
    register_generator,
    register_generator_class,
    register_preset,
    register_recipe,
)

__all__ = [
    "BaseGenerator",
    "CheckpointError",
    "DiskFullError",
    "GANGenerator",
    "Generator",
    "LabelledGenerator",
    "LatentPriorGenerator",
    "MixtureGenerator",
    "OutputInUseError",
    "RelabelledGenerator",
    "SamplingError",
    "StoredSamples",
    "VAEGenerator",
    "DiffusionGenerator",
    "__version__",
    "build_model",
    "get_device",
    "list_families",
    "list_generators",
    "list_models",
    "list_presets",
    "list_recipes",
    "load_generator",
    "fit_latent_prior",
    "match_classes",
    "register_family",
    "register_generator",
    "register_generator_class",
    "register_model",
    "register_preset",
    "register_recipe",
]
