"""A diffusion model's DDIM sampler as a :class:`~genaug.Generator`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from genaug.generators.base import BaseGenerator, check_classes
from genaug.registry import build_model, register_generator_class


@register_generator_class("diffusion")
class DiffusionGenerator(BaseGenerator):
    """Samples a diffusion U-Net with deterministic DDIM and maps [-1, 1] to [0, 1].

    The latent is the starting noise x_T, flattened (``latent_dim`` = C * H * W); DDIM with
    eta = 0 makes each image a pure function of its latent and label, so :meth:`decode`, fixed
    seeds and HDF5 latents work as for a GAN. ``truncation`` scales x_T. Sampling costs
    ``config.sample_steps`` network passes per image (twice that with guidance > 0), against
    one for a GAN or VAE decoder (guidance doubles only the steps inside
    ``guidance_interval``): set ``steps``, ``guidance`` or ``guidance_interval`` here to trade
    speed, fidelity and diversity without retraining.

    Example:
        >>> import torch
        >>> from genaug.models.diffusion import DiffusionConfig, DiffusionUNet
        >>> gen = DiffusionGenerator(DiffusionUNet(DiffusionConfig(num_classes=10, sample_steps=2)))
        >>> gen.sample(torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])
    """

    family = "diffusion"
    decode_chunk = 128

    def __init__(self, unet: nn.Module, *, classes: list[str] | None = None, family: str = "diffusion",
                 steps: int | None = None, guidance: float | None = None,
                 guidance_interval: tuple[float, float] | None = None) -> None:
        cfg = unet.config
        super().__init__(config=cfg, classes=check_classes(classes, cfg.num_classes),
                         image_shape=cfg.image_shape, latent_dim=cfg.latent_dim)
        self.family = family
        self.unet = unet
        self.steps = steps
        self.guidance = guidance
        self.guidance_interval = None
        if steps is not None or guidance is not None or guidance_interval is not None:
            # Validate through the config, which names the field and what was received.
            checked = cfg.replace(
                sample_steps=cfg.sample_steps if steps is None else steps,
                guidance=cfg.guidance if guidance is None else guidance,
                guidance_interval=cfg.guidance_interval if guidance_interval is None else guidance_interval)
            if guidance_interval is not None:
                self.guidance_interval = checked.guidance_interval

    def card(self) -> dict[str, Any]:
        """The card, its config carrying the sampler this generator uses (``steps``, ``guidance``
        and ``guidance_interval`` given here replace the network's own), so a saved copy samples
        the same."""
        card = super().card()
        cfg = self.unet.config
        card["config"] = cfg.replace(
            sample_steps=cfg.sample_steps if self.steps is None else self.steps,
            guidance=cfg.guidance if self.guidance is None else self.guidance,
            guidance_interval=cfg.guidance_interval if self.guidance_interval is None else self.guidance_interval,
        ).to_dict()
        return card

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> DiffusionGenerator:
        family = card["family"]
        return cls(build_model(family, card["config"]), classes=card["classes"], family=family)

    @property
    def network(self) -> nn.Module:
        """The trained U-Net this generator samples."""
        return self.unet

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x_t = z.reshape(z.shape[0], *self.image_shape)
        x = self.unet.ddim_sample(x_t, labels if self.num_classes else None, steps=self.steps,
                                  guidance=self.guidance, guidance_interval=self.guidance_interval)
        return (x + 1.0) * 0.5
