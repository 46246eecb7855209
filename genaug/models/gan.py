"""GAN families: MLP GAN, DCGAN and BEGAN, each unconditional or conditional.

Each registers itself with :func:`~genaug.registry.register_model`; a GAN model holds
``generator`` and ``discriminator`` and a ``build_generator(config)`` static method, which is
what :class:`~genaug.generators.GANGenerator` samples.

Generators output tanh images in [-1, 1]. Discriminators return one logit per
sample (BEGAN's returns a reconstruction). Conditioning follows the source:
the one-hot label is joined to z in G and to the input of D; ``conditioning=
"projection"`` instead adds an inner product of a class embedding with D's
features (Miyato & Koyama, 2018).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from genaug._validation import (
    check_choice,
    check_float,
    check_image_shape,
    check_int,
    check_int_tuple,
)
from genaug.models.config import ModelConfig
from genaug.models.layers import (
    ConvDecoder,
    ConvEncoder,
    ConvTranspose2d,
    DenseToMapDecoder,
    MinibatchDiscrimination,
    feature_trunk,
    join_label_maps,
    join_label_vector,
    norm_1d,
    norm_2d,
    resolve_stage_channels,
)
from genaug.registry import register_model

CONDITIONING = ("concat", "projection")
NORMS = ("none", "batch", "layer")


@dataclasses.dataclass
class GANConfigBase(ModelConfig):
    image_shape: tuple[int, int, int] = (1, 28, 28)
    latent_dim: int = 100
    num_classes: int = 0
    conditioning: str = "concat"
    minibatch_features: int = 0
    minibatch_kernel_dim: int = 5
    g_dropout: float = 0.0
    leaky_slope: float = 0.2

    def _check_common(self, multiple_of: int) -> None:
        self.image_shape = check_image_shape("image_shape", self.image_shape, multiple_of=multiple_of)
        check_int("latent_dim", self.latent_dim, minimum=1)
        check_int("num_classes", self.num_classes, minimum=0)
        check_choice("conditioning", self.conditioning, CONDITIONING)
        check_int("minibatch_features", self.minibatch_features, minimum=0)
        check_int("minibatch_kernel_dim", self.minibatch_kernel_dim, minimum=1)
        check_float("g_dropout", self.g_dropout, low=0.0, high=1.0, high_open=True)
        check_float("leaky_slope", self.leaky_slope, low=0.0, high=1.0)


class DiscriminatorHead(nn.Module):
    """Optional minibatch discrimination, a linear logit and an optional projection term."""

    def __init__(self, in_features: int, config: GANConfigBase) -> None:
        super().__init__()
        self.mbd = (
            MinibatchDiscrimination(
                in_features, config.minibatch_features, config.minibatch_kernel_dim
            )
            if config.minibatch_features
            else None
        )
        self.conditional = bool(config.num_classes)
        f = self.mbd.out_features if self.mbd is not None else in_features
        self.linear = nn.Linear(f, 1)
        self.embed = (
            nn.Embedding(config.num_classes, f)
            if config.num_classes and config.conditioning == "projection"
            else None
        )
        if self.embed is not None:
            # nn.Embedding's N(0, 1) start makes the projection term's logits ~sqrt(features)
            # times too large (std ~58 for the cDCGAN's 6,272 features); Glorot keeps them O(1).
            nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if self.mbd is not None:
            h = self.mbd(h, labels if self.conditional else None)
        out = self.linear(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(labels) * h).sum(dim=1)
        return out


def _d_input(x: torch.Tensor, labels: torch.Tensor | None, config: GANConfigBase) -> torch.Tensor:
    k = config.num_classes if config.conditioning == "concat" else 0
    return join_label_maps(x, labels, k)


def _d_in_channels(config: GANConfigBase) -> int:
    return config.image_shape[0] + _d_label_inputs(config)


def _d_label_inputs(config: GANConfigBase) -> int:
    """Label inputs of D's trunk: the one-hot class when it is joined to D's input."""
    return config.num_classes if config.conditioning == "concat" else 0


class GANModel(nn.Module):
    """A GAN as a pair: ``generator(z, labels)`` and ``discriminator(x, labels)``; its features
    (for pretraining classifiers) are the discriminator's."""

    input_range = "tanh"
    discriminator: nn.Module

    @property
    def out_features(self) -> int:
        return self.discriminator.out_features

    def feature_extractor(self) -> nn.Module:
        return self.discriminator.feature_extractor()


# ---------------------------------------------------------------- MLP GAN


@dataclasses.dataclass
class GANConfig(GANConfigBase):
    """MLP GAN: G 100 -> 1024 -> 1024 -> 784 (ReLU, tanh out); D 784 -> 256 -> 256 -> 1 (LeakyReLU).

    Args:
        g_hidden: hidden widths of G.
        d_hidden: hidden widths of D.
        g_norm: "none" or "batch" normalisation after G's hidden layers.
    """

    g_hidden: tuple[int, ...] = (1024, 1024)
    d_hidden: tuple[int, ...] = (256, 256)
    g_norm: str = "none"

    def __post_init__(self) -> None:
        self._check_common(multiple_of=1)
        self.g_hidden = check_int_tuple("g_hidden", self.g_hidden)
        self.d_hidden = check_int_tuple("d_hidden", self.d_hidden)
        check_choice("g_norm", self.g_norm, ("none", "batch"))


class MLPGenerator(nn.Module):
    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        f = config.latent_dim + config.num_classes
        for width in config.g_hidden:
            layers += [nn.Linear(f, width), norm_1d(config.g_norm, width), nn.ReLU()]
            if config.g_dropout:
                layers.append(nn.Dropout(config.g_dropout))
            f = width
        c, h, w = config.image_shape
        layers += [nn.Linear(f, c * h * w), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        out = self.net(join_label_vector(z, labels, self.config.num_classes))
        return out.view(-1, *self.config.image_shape)


class MLPDiscriminator(nn.Module):
    input_range = "tanh"

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        extra = config.num_classes if config.conditioning == "concat" else 0
        layers: list[nn.Module] = []
        f = c * h * w + extra
        for width in config.d_hidden:
            layers += [nn.Linear(f, width), nn.LeakyReLU(config.leaky_slope)]
            f = width
        self.trunk = nn.Sequential(*layers)
        self.out_features = f
        self.head = DiscriminatorHead(f, config)

    def feature_extractor(self) -> nn.Module:
        """Images in [-1, 1] -> trunk features, with no class (zero label inputs)."""
        return feature_trunk(self.trunk, self.out_features, num_labels=_d_label_inputs(self.config), image=False)

    def features(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.trunk(join_label_vector(x.flatten(1), labels, _d_label_inputs(self.config)))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, labels), labels)


@register_model("gan", config=GANConfig, generator="gan")
class GAN(GANModel):
    """MLP GAN: ``generator(z, labels)`` and ``discriminator(x, labels)``."""

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = MLPGenerator(config)
        self.discriminator = MLPDiscriminator(config)

    @staticmethod
    def build_generator(config: GANConfig) -> nn.Module:
        return MLPGenerator(config)


# ---------------------------------------------------------------- DCGAN


@dataclasses.dataclass
class DCGANConfig(GANConfigBase):
    """DCGAN.

    G: dense 1024 + BN -> dense 7*7*128 + BN -> convT 4x4 s2 (64) + BN -> convT 4x4 s2 (C), tanh.
    D ("pool", the source's): conv 5x5 (32) -> pool -> conv 5x5 (64) -> pool -> dense 1024 -> 1,
    LeakyReLU. D ("strided", the source's advice): stride-2 4x4 convolutions, no pooling.

    Args:
        g_dense: width of G's first dense layer.
        g_channels: channels of G's feature maps, coarsest first; one stride-2 stage each.
            None: one stage per halving of the image size (see
            :func:`~genaug.models.layers.stride2_stages`), ``g_width`` at the finest,
            doubling towards the coarsest: (128, 64) at 28x28, (512, 256, 128, 64) at 64x64.
        g_width: G's finest-stage channels when ``g_channels`` is None (default 64).
        d_arch: "pool" or "strided".
        d_channels: D's convolution channels. None: one per stage, ``d_width`` first,
            doubling: (32, 64) at 28x28, (32, 64, 128, 256) at 64x64.
        d_width: D's first-stage channels when ``d_channels`` is None (default 32).
        d_dense: width of D's dense layer (0: none).
        d_norm: "none", "batch" or "layer" normalisation in D (not on its first layer).
            Use "none" or "layer" with a gradient penalty.
    """

    g_dense: int = 1024
    g_channels: tuple[int, ...] | None = None
    g_width: int | None = None
    d_arch: str = "pool"
    d_channels: tuple[int, ...] | None = None
    d_width: int | None = None
    d_dense: int = 1024
    d_norm: str = "none"

    def __post_init__(self) -> None:
        resolve_stage_channels(self, "g_channels", "g_width", 64, coarse_first=True)
        resolve_stage_channels(self, "d_channels", "d_width", 32)
        self._check_common(multiple_of=2 ** max(len(self.g_channels), len(self.d_channels)))
        check_int("g_dense", self.g_dense, minimum=1)
        check_choice("d_arch", self.d_arch, ("pool", "strided"))
        check_int("d_dense", self.d_dense, minimum=0)
        check_choice("d_norm", self.d_norm, NORMS)


class DCGANGenerator(nn.Module):
    def __init__(
        self,
        image_shape: tuple[int, int, int],
        latent_dim: int,
        num_classes: int,
        dense: int,
        channels: tuple[int, ...],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        c, h, w = image_shape
        scale = 2 ** len(channels)
        self.start_shape = (channels[0], h // scale, w // scale)
        n0 = channels[0] * (h // scale) * (w // scale)
        drop = [nn.Dropout(dropout)] if dropout else []
        self.fc = nn.Sequential(
            nn.Linear(latent_dim + num_classes, dense),
            nn.BatchNorm1d(dense),
            nn.ReLU(),
            *drop,
            nn.Linear(dense, n0),
            nn.BatchNorm1d(n0),
            nn.ReLU(),
            *([nn.Dropout(dropout)] if dropout else []),
        )
        layers: list[nn.Module] = []
        outs = tuple(channels[1:]) + (c,)
        ch = channels[0]
        for i, out in enumerate(outs):
            layers.append(ConvTranspose2d(ch, out, 4, stride=2, padding=1))
            if i < len(outs) - 1:
                layers += [nn.BatchNorm2d(out), nn.ReLU()]
            ch = out
        layers.append(nn.Tanh())
        self.conv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(join_label_vector(z, labels, self.num_classes))
        # channels_last inside, as in ConvDecoder; images leave in the default layout
        x = h.view(-1, *self.start_shape).contiguous(memory_format=torch.channels_last)
        return self.conv(x).contiguous()


class DCGANDiscriminator(nn.Module):
    input_range = "tanh"

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        self.config = config
        c, h, w = config.image_shape
        act = config.leaky_slope
        layers: list[nn.Module] = []
        ch = _d_in_channels(config)
        for i, out in enumerate(config.d_channels):
            norm = norm_2d(config.d_norm, out) if i > 0 else nn.Identity()
            if config.d_arch == "pool":
                layers += [nn.Conv2d(ch, out, 5, padding=2), norm, nn.LeakyReLU(act), nn.MaxPool2d(2)]
            else:
                layers += [nn.Conv2d(ch, out, 4, stride=2, padding=1), norm, nn.LeakyReLU(act)]
            ch = out
        layers.append(nn.Flatten())
        scale = 2 ** len(config.d_channels)
        f = ch * (h // scale) * (w // scale)
        if config.d_dense:
            layers += [nn.Linear(f, config.d_dense), nn.LeakyReLU(act)]
            f = config.d_dense
        self.trunk = nn.Sequential(*layers)
        self.out_features = f
        self.head = DiscriminatorHead(f, config)

    def feature_extractor(self) -> nn.Module:
        """Images in [-1, 1] -> trunk features, with no class (zero label channels)."""
        return feature_trunk(self.trunk, self.out_features, num_labels=_d_label_inputs(self.config))

    def features(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.trunk(_d_input(x, labels, self.config))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, labels), labels)


@register_model("dcgan", config=DCGANConfig, generator="gan")
class DCGAN(GANModel):
    """Deep convolutional GAN: ``generator(z, labels)`` and ``discriminator(x, labels)``."""

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = self.build_generator(config)
        self.discriminator = DCGANDiscriminator(config)

    @staticmethod
    def build_generator(config: DCGANConfig) -> nn.Module:
        return DCGANGenerator(
            config.image_shape,
            config.latent_dim,
            config.num_classes,
            config.g_dense,
            config.g_channels,
            config.g_dropout,
        )


# ---------------------------------------------------------------- BEGAN


@dataclasses.dataclass
class BEGANConfig(GANConfigBase):
    """BEGAN (Berthelot et al., 2017): an autoencoder as discriminator, and a generator
    built like that autoencoder's decoder.

    Both decoders grow the image by nearest-neighbour upsampling and 3x3 convolutions with
    ELU and no batch norm, as in the paper. With a DCGAN generator (transposed
    convolutions, batch norm) and a transposed-convolution decoder, generated images on
    MNIST stayed harder to reconstruct than gamma times the real ones, so k_t stayed at 0
    and the generator collapsed to one checkerboard pattern within 600 steps.

    Args:
        latent_dim: G's noise size.
        g_channels: G's channels from the lowest resolution up (each stage doubles H and W).
            None: derived from the image size like DCGAN's, ``g_width`` at the finest.
        g_width: G's finest-stage channels when ``g_channels`` is None (default 64).
        d_channels: channels of the discriminator's encoder (and, reversed, its decoder).
            None: derived from the image size, ``d_width`` first.
        d_width: the encoder's first-stage channels when ``d_channels`` is None (default 32).
        d_latent: size of the discriminator's bottleneck code.
        decoder: layout of both decoders. ``"compact"``: one 3x3 convolution after each
            upsampling, the last one to the image. ``"paper"``: the paper's, two 3x3
            convolutions with ELU at every resolution (the coarsest and the image's included),
            then a 3x3 convolution to the image.
        d_output: ``"tanh"`` squashes the discriminator's reconstruction into [-1, 1];
            ``"linear"`` leaves it as the last convolution gives it, as in the paper. (The
            generator always ends in tanh.)
    """

    latent_dim: int = 64
    g_channels: tuple[int, ...] | None = None
    g_width: int | None = None
    d_channels: tuple[int, ...] | None = None
    d_width: int | None = None
    d_latent: int = 64
    decoder: str = "compact"
    d_output: str = "tanh"

    def __post_init__(self) -> None:
        resolve_stage_channels(self, "g_channels", "g_width", 64, coarse_first=True)
        resolve_stage_channels(self, "d_channels", "d_width", 32)
        self._check_common(multiple_of=2 ** max(len(self.g_channels), len(self.d_channels)))
        if self.minibatch_features:
            raise ValueError(
                "minibatch_features must be 0 for BEGAN (its discriminator is an autoencoder "
                f"with no logit head), got {self.minibatch_features}"
            )
        if self.conditioning != "concat":
            raise ValueError(f"conditioning must be 'concat' for BEGAN, got {self.conditioning!r}")
        if self.g_dropout:
            raise ValueError(f"g_dropout must be 0 for BEGAN (its generator has no dropout), got {self.g_dropout}")
        check_int("d_latent", self.d_latent, minimum=1)
        check_choice("decoder", self.decoder, ("compact", "paper"))
        check_choice("d_output", self.d_output, ("tanh", "linear"))


class BEGANPaperDecoder(DenseToMapDecoder):
    """BEGAN's decoder as in the paper (Berthelot et al., 2017, figure 1): dense (no activation) to
    the coarsest map, two 3x3 convolutions with ELU at every resolution, nearest upsampling
    between, then a 3x3 convolution to the image (pre-activation values).

    ``channels`` in encoder order; the image's resolution keeps the finest width.
    """

    def __init__(self, in_features: int, channels: tuple[int, ...], out_channels: int,
                 image_hw: tuple[int, int]) -> None:
        super().__init__()
        scale = 2 ** len(channels)
        widths = tuple(reversed(channels)) + (channels[0],)  # coarsest first, one per resolution
        self.start_shape = (widths[0], image_hw[0] // scale, image_hw[1] // scale)
        self.fc = nn.Linear(in_features, widths[0] * self.start_shape[1] * self.start_shape[2])
        layers: list[nn.Module] = []
        c = widths[0]
        for i, width in enumerate(widths):
            if i:
                layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ELU(), nn.Conv2d(width, width, 3, padding=1), nn.ELU()]
            c = width
        layers.append(nn.Conv2d(c, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)


def _began_decoder(in_features: int, channels: tuple[int, ...], config: BEGANConfig) -> nn.Module:
    """The decoder shared by BEGAN's generator and its discriminator: nearest upsampling and
    3x3 convolutions with ELU (``channels`` in encoder order), in ``config.decoder``'s layout."""
    c, h, w = config.image_shape
    if config.decoder == "paper":
        return BEGANPaperDecoder(in_features, channels, c, (h, w))
    return ConvDecoder(in_features, channels, c, (h, w), kernel_size=3, activation="elu", upsample="nearest")


class BEGANGenerator(nn.Module):
    """BEGAN's generator: the discriminator's decoder design, then tanh."""

    def __init__(self, config: BEGANConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = _began_decoder(config.latent_dim + config.num_classes,
                                      tuple(reversed(config.g_channels)), config)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.decoder(join_label_vector(z, labels, self.config.num_classes)))


class BEGANDiscriminator(nn.Module):
    """Autoencoder discriminator: returns the reconstruction of its input (in [-1, 1] through a
    tanh, or unbounded with ``d_output="linear"``).

    Its features are the encoder's last convolution, flattened (before the bottleneck code).
    """

    input_range = "tanh"

    def __init__(self, config: BEGANConfig) -> None:
        super().__init__()
        self.config = config
        _, h, w = config.image_shape
        self.encoder_trunk = ConvEncoder(
            _d_in_channels(config), config.d_channels, (h, w), kernel_size=3, activation="elu"
        )
        self.to_code = nn.Linear(self.encoder_trunk.out_features, config.d_latent)
        self.decoder = _began_decoder(config.d_latent + config.num_classes, config.d_channels, config)
        self.out_features = self.encoder_trunk.out_features

    def feature_extractor(self) -> nn.Module:
        return feature_trunk(self.encoder_trunk, self.out_features, num_labels=_d_label_inputs(self.config))

    def features(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder_trunk(_d_input(x, labels, self.config))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        code = join_label_vector(self.to_code(self.features(x, labels)), labels, self.config.num_classes)
        recon = self.decoder(code)
        return torch.tanh(recon) if self.config.d_output == "tanh" else recon


@register_model("began", config=BEGANConfig, generator="gan")
class BEGAN(GANModel):
    """Boundary equilibrium GAN (Berthelot et al., 2017)."""

    def __init__(self, config: BEGANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = self.build_generator(config)
        self.discriminator = BEGANDiscriminator(config)

    @staticmethod
    def build_generator(config: BEGANConfig) -> nn.Module:
        return BEGANGenerator(config)
