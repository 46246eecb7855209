"""Generator wrappers implementing :class:`Generator`."""

from genaug.generators.base import BaseGenerator, Generator
from genaug.generators.wrappers import GANGenerator, LabelledConfig, LabelledGenerator, VAEGenerator

__all__ = [
    "BaseGenerator",
    "GANGenerator",
    "Generator",
    "LabelledConfig",
    "LabelledGenerator",
    "VAEGenerator",
]
