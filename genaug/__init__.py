"""genaug: generative data augmentation for PyTorch.

Trained VAE decoders and conditional GANs become class-labelled sources of
synthetic images behind one small :class:`Generator` interface.

Example:
    >>> import genaug
    >>> "vae" in genaug.list_families()
    True
"""

__version__ = "0.1.0"

from genaug.checkpoint import CheckpointError  # noqa: E402
from genaug.device import get_device  # noqa: E402
from genaug.generators import (  # noqa: E402
    BaseGenerator,
    GANGenerator,
    Generator,
    LabelledGenerator,
    MixtureGenerator,
    VAEGenerator,
)
from genaug.registry import (  # noqa: E402
    list_families,
    list_generators,
    load_generator,
    register_family,
    register_generator,
)

__all__ = [
    "BaseGenerator",
    "CheckpointError",
    "GANGenerator",
    "Generator",
    "LabelledGenerator",
    "MixtureGenerator",
    "VAEGenerator",
    "__version__",
    "get_device",
    "list_families",
    "list_generators",
    "load_generator",
    "register_family",
    "register_generator",
]
