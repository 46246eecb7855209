"""A GAN's generator network as a :class:`~genaug.Generator`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genaug.generators.base import BaseGenerator, check_classes
from genaug.registry import get_model_spec, make_config, register_generator_class


@register_generator_class("gan")
class GANGenerator(BaseGenerator):
    """Samples a GAN generator and maps its tanh output to [0, 1].

    Serves every registered model that names ``generator="gan"`` (MLP GAN, DCGAN, BEGAN) and
    has a ``build_generator(config)`` static method; ``family`` is the model's name.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        family: str,
        config: Any,
        classes: list[str] | None = None,
    ) -> None:
        super().__init__(
            config=config,
            classes=check_classes(classes, config.num_classes),
            image_shape=config.image_shape,
            latent_dim=config.latent_dim,
        )
        self.family = family
        self.net = net

    @classmethod
    def from_config(
        cls, family: str, config: Any, *, classes: list[str] | None = None
    ) -> GANGenerator:
        spec = get_model_spec(family)
        return cls(spec.model_cls.build_generator(config), family=family, config=config, classes=classes)

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> GANGenerator:
        family = card["family"]
        return cls.from_config(family, make_config(family, card["config"]), classes=card["classes"])

    @property
    def network(self) -> nn.Module:
        """The trained generator network this wrapper samples."""
        return self.net

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.net(z, labels if self.num_classes else None)
        return (x + 1.0) * 0.5
