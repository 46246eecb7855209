"""A (conditional) VAE's decoder as a :class:`~genaug.Generator`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genaug.generators.base import BaseGenerator, check_classes
from genaug.registry import build_model, register_generator_class


@register_generator_class("vae")
class VAEGenerator(BaseGenerator):
    """Samples a (conditional) VAE's decoder: ``sigmoid(decoder(z, label))`` with z ~ N(0, I).

    Serves any registered model with ``decode_logits(z, labels)`` that names
    ``generator="vae"``; ``family`` is the model's name.

    Keeps the whole VAE so its encoder stays available (e.g. for pretraining).

    Example:
        >>> import torch
        >>> from genaug.models import VAE, VAEConfig
        >>> gen = VAEGenerator(VAE(VAEConfig(num_classes=10)))
        >>> gen.sample(torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])
    """

    family = "vae"

    def __init__(self, vae: nn.Module, *, classes: list[str] | None = None, family: str = "vae") -> None:
        cfg = vae.config
        super().__init__(
            config=cfg,
            classes=check_classes(classes, cfg.num_classes),
            image_shape=cfg.image_shape,
            latent_dim=cfg.latent_dim,
        )
        self.family = family
        self.vae = vae

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> VAEGenerator:
        family = card["family"]
        return cls(build_model(family, card["config"]), classes=card["classes"], family=family)

    @property
    def network(self) -> nn.Module:
        """The trained VAE this generator samples (its encoder is there too)."""
        return self.vae

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.vae.decode_logits(z, labels if self.num_classes else None))
