"""Generator wrappers implementing :class:`Generator`."""

from genaug.generators.base import BaseGenerator, Generator
from genaug.generators.wrappers import (
    FilterConfig,
    FilteredGenerator,
    GANGenerator,
    LabelledConfig,
    LabelledGenerator,
    MixtureConfig,
    MixtureGenerator,
    VAEGenerator,
)

__all__ = [
    "BaseGenerator",
    "FilterConfig",
    "FilteredGenerator",
    "GANGenerator",
    "Generator",
    "LabelledConfig",
    "LabelledGenerator",
    "MixtureConfig",
    "MixtureGenerator",
    "VAEGenerator",
]
