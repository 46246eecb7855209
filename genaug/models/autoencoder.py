"""Convolutional autoencoder, VAE and conditional VAE (the source's architecture).

Encoder: conv 5x5 stride 2 (16) -> conv 5x5 stride 2 (32) -> dense latent (20).
Decoder: dense 7*7*32 -> convT 5x5 stride 2 (16) -> convT 5x5 stride 2 (C), sigmoid.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from genaug._validation import check_image_shape, check_int
from genaug.models.config import ModelConfig
from genaug.models.layers import (
    ConvDecoder,
    ConvEncoder,
    feature_trunk,
    join_label_maps,
    join_label_vector,
    resolve_stage_channels,
)
from genaug.registry import register_model


@dataclasses.dataclass
class AutoencoderConfig(ModelConfig):
    """Convolutional autoencoder.

    Args:
        image_shape: (C, H, W); H and W divisible by 2 ** len(channels).
        latent_dim: size of the code.
        channels: output channels of the stride-2 encoder convolutions (the decoder mirrors
            them). None: one stage per halving of the image size (see
            :func:`~genaug.models.layers.stride2_stages`; two at 28x28), ``width`` channels
            first, doubling per stage: (16, 32) at 28x28, (16, 32, 64, 128) at 64x64.
        width: channels of the first stage when ``channels`` is None (default 16).
        kernel_size: convolution kernel size.
    """

    image_shape: tuple[int, int, int] = (1, 28, 28)
    latent_dim: int = 20
    channels: tuple[int, ...] | None = None
    width: int | None = None
    kernel_size: int = 5

    def __post_init__(self) -> None:
        resolve_stage_channels(self, "channels", "width", 16)
        self.image_shape = check_image_shape(
            "image_shape", self.image_shape, multiple_of=2 ** len(self.channels)
        )
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_int("kernel_size", self.kernel_size, minimum=2)


@dataclasses.dataclass
class VAEConfig(AutoencoderConfig):
    """VAE; ``num_classes > 0`` makes it a conditional VAE.

    Args:
        num_classes: 0 for an unconditional VAE; otherwise the one-hot class is
            joined to the encoder's input (as constant channels) and to the
            decoder's input (next to z).
    """

    num_classes: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("num_classes", self.num_classes, minimum=0)


@register_model("autoencoder", config=AutoencoderConfig)
class ConvAutoencoder(nn.Module):
    """Deterministic convolutional autoencoder. ``forward`` returns logits; apply sigmoid for images.

    Features (for pretraining classifiers): the encoder's last convolution, flattened.
    """

    input_range = "sigmoid"

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        self.encoder_trunk = ConvEncoder(c, config.channels, (h, w), kernel_size=config.kernel_size)
        self.to_latent = nn.Linear(self.encoder_trunk.out_features, config.latent_dim)
        self.decoder = ConvDecoder(
            config.latent_dim, config.channels, c, (h, w), kernel_size=config.kernel_size
        )
        self.out_features = self.encoder_trunk.out_features

    def feature_extractor(self) -> nn.Module:
        """Images in [0, 1] -> (N, out_features) encoder features, sharing this model's weights."""
        return self.encoder_trunk

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_latent(self.encoder_trunk(x))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_logits(self.encode(x))


@register_model("vae", config=VAEConfig, generator="vae")
class VAE(nn.Module):
    """(Conditional) variational autoencoder with the reparameterisation trick.

    ``forward(x, labels)`` returns ``(logits, mu, logvar)``. Images are
    ``sigmoid(logits)`` in [0, 1]; training uses the logits for a stable BCE.
    Features: the encoder's last convolution, flattened (a conditional VAE's encoder sees
    all-zero label channels, since the class is what a classifier predicts).
    """

    input_range = "sigmoid"

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        k = config.num_classes
        self.encoder_trunk = ConvEncoder(
            c + k, config.channels, (h, w), kernel_size=config.kernel_size
        )
        self.mu = nn.Linear(self.encoder_trunk.out_features, config.latent_dim)
        # The source predicts sigma and takes log(sigma^2) in the KL term, which is NaN
        # (or -inf) as soon as the network outputs sigma <= 0. Predicting log(sigma^2)
        # directly is unconstrained: sigma = exp(logvar / 2) is always positive.
        self.logvar = nn.Linear(self.encoder_trunk.out_features, config.latent_dim)
        self.decoder = ConvDecoder(
            config.latent_dim + k, config.channels, c, (h, w), kernel_size=config.kernel_size
        )
        self.out_features = self.encoder_trunk.out_features

    def feature_extractor(self) -> nn.Module:
        """Images in [0, 1] -> (N, out_features) encoder features, sharing this model's weights."""
        return feature_trunk(self.encoder_trunk, self.out_features, num_labels=self.config.num_classes)

    def encode(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder_trunk(join_label_maps(x, labels, self.config.num_classes))
        return self.mu(h), self.logvar(h)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): sampling stays differentiable in mu and sigma."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode_logits(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(join_label_vector(z, labels, self.config.num_classes))

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x, labels)
        z = self.reparameterize(mu, logvar)
        return self.decode_logits(z, labels), mu, logvar
