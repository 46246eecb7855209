"""Semi-supervised GAN (Salimans et al., 2016, "Improved techniques for training GANs").

The discriminator is a K-class classifier; "real" means sum_k exp(logit_k) is large,
so unlabelled real images and generated ones train it without labels, next to a few
labelled images. The generator is trained by feature matching on the discriminator's
last hidden layer. MNIST architecture of the paper: D an MLP 784-1000-500-250-250-250-K
with weight normalisation and Gaussian noise on every layer's input; G an MLP
100-500-500-784 with batch norm, softplus and a sigmoid output (images in [0, 1]).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from genaug._validation import check_float, check_image_shape, check_int, check_int_tuple
from genaug.models.config import ModelConfig
from genaug.registry import register_model


@dataclasses.dataclass
class SSGANConfig(ModelConfig):
    """Semi-supervised GAN.

    Args:
        image_shape: (C, H, W) of images in [0, 1].
        num_classes: classes the discriminator predicts (>= 2).
        latent_dim: G's noise size.
        g_hidden: G's hidden widths.
        d_hidden: D's hidden widths.
        input_noise: std of the Gaussian noise added to D's input while training.
        hidden_noise: std of the noise added to each hidden layer's input while training.
    """

    image_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    latent_dim: int = 100
    g_hidden: tuple[int, ...] = (500, 500)
    d_hidden: tuple[int, ...] = (1000, 500, 250, 250, 250)
    input_noise: float = 0.3
    hidden_noise: float = 0.5

    def __post_init__(self) -> None:
        self.image_shape = check_image_shape("image_shape", self.image_shape, multiple_of=1)
        check_int("num_classes", self.num_classes, minimum=2)
        check_int("latent_dim", self.latent_dim, minimum=1)
        self.g_hidden = check_int_tuple("g_hidden", self.g_hidden)
        self.d_hidden = check_int_tuple("d_hidden", self.d_hidden)
        check_float("input_noise", self.input_noise, low=0.0)
        check_float("hidden_noise", self.hidden_noise, low=0.0)


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode; identity in eval mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.std > 0:
            return x + torch.randn_like(x) * self.std
        return x


class SSGANDiscriminator(nn.Module):
    """``forward(x)``: K class logits of images in [0, 1]; ``features(x)``: the last hidden layer."""

    input_range = "sigmoid"

    def __init__(self, config: SSGANConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        layers: list[nn.Module] = [nn.Flatten(), GaussianNoise(config.input_noise)]
        f = c * h * w
        for i, width in enumerate(config.d_hidden):
            if i:
                layers.append(GaussianNoise(config.hidden_noise))
            layers += [weight_norm(nn.Linear(f, width)), nn.ReLU()]
            f = width
        self.trunk = nn.Sequential(*layers)
        self.out_features = f
        self.head = nn.Sequential(GaussianNoise(config.hidden_noise), weight_norm(nn.Linear(f, config.num_classes)))

    def feature_extractor(self) -> nn.Module:
        return self.trunk

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def scaled_layers(self) -> list[nn.Linear]:
        """The weight-normalised layers, input first; the last one is the class head."""
        return [m for m in (*self.trunk, *self.head) if isinstance(m, nn.Linear)]

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation (Salimans & Kingma, 2016): layer by layer, set each
        weight-normalised layer's scale and bias so that its outputs on the batch ``x`` (with
        the training noise, as in the paper's code) have zero mean and unit variance."""
        was_training = self.training
        self.train()
        h = x
        for module in (*self.trunk, *self.head):
            if isinstance(module, nn.Linear):
                v = module.parametrizations.weight.original1
                out = F.linear(h, v / v.norm(dim=1, keepdim=True))
                mean, std = out.mean(0), out.std(0, unbiased=False).clamp_min(1e-6)
                module.parametrizations.weight.original0.copy_((1.0 / std).unsqueeze(1))
                module.bias.copy_(-mean / std)
            h = module(h)
        self.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class SSGANGenerator(nn.Module):
    def __init__(self, config: SSGANConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        f = config.latent_dim
        for width in config.g_hidden:
            layers += [nn.Linear(f, width), nn.BatchNorm1d(width), nn.Softplus()]
            f = width
        c, h, w = config.image_shape
        layers += [weight_norm(nn.Linear(f, c * h * w)), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.config.image_shape)


@register_model("ssgan", config=SSGANConfig)
class SemiSupervisedGAN(nn.Module):
    """``generator(z)`` and ``discriminator(x)`` (a K-class classifier)."""

    input_range = "sigmoid"

    def __init__(self, config: SSGANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = SSGANGenerator(config)
        self.discriminator = SSGANDiscriminator(config)
        self.out_features = self.discriminator.out_features

    def feature_extractor(self) -> nn.Module:
        return self.discriminator.feature_extractor()
