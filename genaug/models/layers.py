"""Building blocks shared by the model families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genaug._validation import check_image_shape, check_int, check_int_tuple, resize_hint

# Widths double with each stride-2 stage, up to this many times the finest stage's width
# (DCGAN's 64x64 widths: 64, 128, 256, 512).
MAX_WIDTH_FACTOR = 8


def one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).to(dtype)


def join_label_maps(x: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """Join a one-hot label to an image as ``num_classes`` constant channels (the cGAN input)."""
    if num_classes == 0:
        return x
    maps = one_hot(labels, num_classes, x.dtype)[:, :, None, None]
    return torch.cat([x, maps.expand(-1, -1, x.shape[2], x.shape[3])], dim=1)


def join_label_vector(h: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """Join a one-hot label to a flat vector (latent code or flattened image)."""
    if num_classes == 0:
        return h
    return torch.cat([h, one_hot(labels, num_classes, h.dtype)], dim=1)


def norm_1d(kind: str, features: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind == "layer":
        return nn.LayerNorm(features)
    return nn.Identity()


def norm_2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        # GroupNorm with one group normalises over (C, H, W) per sample, like LayerNorm,
        # and keeps the critic's per-sample gradients intact for WGAN-GP.
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def stride2_stages(image_shape: tuple[int, int, int], *, name: str = "image_shape") -> int:
    """How many stride-2 stages a convolutional model gets for ``(C, H, W)`` images.

    H and W are halved while both stay even and the smaller side stays at least 4, with at
    least two stages: 28x28 -> 2 (7x7 maps, the source's layout), 16x16 -> 2, 32x32 -> 3,
    64x64 -> 4 (4x4 maps), 28x36 -> 2 (7x9). H and W must be multiples of 4 and at least 8.
    """
    _, h, w = image_shape
    if h % 4 or w % 4 or min(h, w) < 8:
        raise ValueError(
            f"{name} must have H and W divisible by 4 and at least 8 (the model halves them in at least two "
            f"stride-2 stages; e.g. (1, 28, 28), (3, 32, 32), (3, 64, 64), (3, 28, 36)), got {tuple(image_shape)}; "
            f"{resize_hint(h, w, 4, minimum=8)}"
        )
    stages = 0
    while h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= 4:
        h, w, stages = h // 2, w // 2, stages + 1
    return max(stages, 2)


def stage_widths(width: int, stages: int, *, coarse_first: bool = False) -> tuple[int, ...]:
    """Channels of ``stages`` stride-2 stages: ``width`` at the finest resolution, doubling
    towards the coarsest up to ``MAX_WIDTH_FACTOR * width``."""
    widths = tuple(min(width * 2**i, width * MAX_WIDTH_FACTOR) for i in range(stages))
    return widths[::-1] if coarse_first else widths


def resolve_stage_channels(config: object, channels_field: str, width_field: str, default_width: int, *,
                           coarse_first: bool = False) -> None:
    """Fill in a config's per-stage channels from its image shape.

    ``channels_field`` None: one stage per :func:`stride2_stages` of ``config.image_shape``,
    ``width_field`` (or ``default_width``) channels at the finest stage. Explicit channels are
    kept, and ``width_field`` is set to their finest stage's width (it must agree when given).
    """
    channels, width = getattr(config, channels_field), getattr(config, width_field)
    if width is not None:
        check_int(width_field, width, minimum=1)
    if channels is None:
        shape = check_image_shape("image_shape", config.image_shape, multiple_of=1)  # type: ignore[attr-defined]
        width = default_width if width is None else width
        stages = stride2_stages(shape, name=f"{type(config).__name__}.image_shape")
        channels = stage_widths(width, stages, coarse_first=coarse_first)
    else:
        channels = check_int_tuple(channels_field, channels)
        finest = channels[-1] if coarse_first else channels[0]
        if width is not None and width != finest:
            raise ValueError(
                f"{width_field} must match {channels_field}'s {'last' if coarse_first else 'first'} (finest) "
                f"stage when both are given, got {width_field}={width} and {channels_field}={channels}; "
                f"give one of them"
            )
        width = finest
    setattr(config, channels_field, channels)
    setattr(config, width_field, width)


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al., 2016).

    Each sample's features are projected to ``num_kernels`` rows of
    ``kernel_dim`` values; for every kernel the layer sums
    ``exp(-L1 distance)`` to the other samples of the batch and appends the sums
    to the features. A collapsed generator makes these sums large, which the
    discriminator can see. Usable after the trunk of any discriminator.

    Args:
        in_features: size of the incoming feature vector.
        num_kernels: number of similarity features appended (B in the paper).
        kernel_dim: size of each projected row (C in the paper).
    """

    def __init__(self, in_features: int, num_kernels: int, kernel_dim: int = 5) -> None:
        super().__init__()
        self.num_kernels = num_kernels
        self.kernel_dim = kernel_dim
        # std 1/sqrt(in_features) keeps the projected rows O(1) whatever the trunk's width, so
        # the exp(-L1) similarities start alive (a fixed 0.1 gives rows of std ~5 and similarities
        # of ~0 for a 6,272-feature trunk: no signal and no gradient).
        self.T = nn.Parameter(torch.randn(in_features, num_kernels * kernel_dim) / in_features**0.5)
        self.out_features = in_features + num_kernels

    def forward(self, h: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Append the similarity sums; with ``labels``, a sample is compared only with the
        samples of its own class, so the layer measures diversity within a class (in a
        conditional discriminator, comparing across classes rewards drawing other classes)."""
        m = (h @ self.T).view(-1, self.num_kernels, self.kernel_dim)
        sim = torch.exp(-(m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(dim=3))  # (N, N, B)
        if labels is not None:
            sim = sim * (labels.unsqueeze(0) == labels.unsqueeze(1)).unsqueeze(2)
        # Subtract the self-similarity exp(0) = 1 so a sample is not compared with itself.
        o = sim.sum(dim=0) - 1.0
        return torch.cat([h, o], dim=1)


#: Transposed convolutions with at most this many output channels take the GEMM + shifted-add path
#: on CPU: oneDNN runs such thin layers (an image's 1 or 3 channels) at 3-10 GFLOP/s, a tenth of
#: the machine's GEMM rate, which made the last layer of a generator cost as much as all the others.
THIN_OUT_CHANNELS = 4


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with a faster CPU path for thin outputs; same parameters and state dict.

    With at most :data:`THIN_OUT_CHANNELS` output channels on CPU it computes every kernel tap's
    contribution in one matrix product and adds the taps into the output at their strided offsets.
    That is the definition of a transposed convolution, so the result equals the oneDNN kernel's up
    to float rounding (a few 1e-7 relative). The path is for inference (sampling, export): with
    autograd recording, and for other layers, devices and options (groups, dilation,
    ``output_size``), ``nn.ConvTranspose2d`` runs unchanged.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if (output_size is not None or x.dim() != 4 or x.device.type != "cpu" or self.groups != 1
                or self.out_channels > THIN_OUT_CHANNELS or self.dilation != (1, 1)
                or self.padding_mode != "zeros"
                or (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))):
            return super().forward(x, output_size)
        return thin_conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)


def thin_conv_transpose2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    output_padding: tuple[int, ...],
) -> torch.Tensor:
    """``F.conv_transpose2d`` (groups 1, dilation 1) as one GEMM plus ``k*k`` shifted adds."""
    n, cin, h, w = x.shape
    cout, k1, k2 = weight.shape[1], weight.shape[2], weight.shape[3]
    (s1, s2), (p1, p2), (o1, o2) = stride, padding, output_padding
    out_h, out_w = (h - 1) * s1 - 2 * p1 + k1 + o1, (w - 1) * s2 - 2 * p2 + k2 + o2
    # taps[c, t1, t2, b, i, j]: input pixel (b, i, j)'s contribution to output (s1*i + t1 - p1, s2*j + t2 - p2),
    # each tap a contiguous block. The pixels-by-channels view is free for channels_last input.
    pixels = x.permute(0, 2, 3, 1).reshape(n * h * w, cin)
    taps = torch.mm(weight.reshape(cin, cout * k1 * k2).t(), pixels.t()).view(cout, k1, k2, n, h, w)
    q1, q2 = -(-k1 // s1), -(-k2 // s2)
    # out[..., a, r1, b, r2] is output row s1*a + r1 and column s2*b + r2, before cropping the padding
    out = x.new_zeros(n, cout, h + q1, s1, w + q2, s2)
    for t1 in range(k1):
        a, r1 = divmod(t1, s1)
        for t2 in range(k2):
            b, r2 = divmod(t2, s2)
            out[:, :, a : a + h, r1, b : b + w, r2] += taps[:, t1, t2].transpose(0, 1)
    out = out.view(n, cout, (h + q1) * s1, (w + q2) * s2)[:, :, p1 : p1 + out_h, p2 : p2 + out_w]
    return out if bias is None else out + bias.view(1, -1, 1, 1)


class ConvEncoder(nn.Module):
    """Stride-2 5x5 convolutions, each halving H and W, then flatten."""

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...],
        image_hw: tuple[int, int],
        *,
        kernel_size: int = 5,
        activation: str = "relu",
        norm: str = "none",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for out in channels:
            layers += [
                nn.Conv2d(c, out, kernel_size, stride=2, padding=(kernel_size - 1) // 2),
                norm_2d(norm, out),
                _act(activation),
            ]
            c = out
        self.net = nn.Sequential(*layers, nn.Flatten())
        scale = 2 ** len(channels)
        self.feature_shape = (c, image_hw[0] // scale, image_hw[1] // scale)
        self.out_features = c * self.feature_shape[1] * self.feature_shape[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DenseToMapDecoder(nn.Module):
    """Base of the decoders that map a vector to a (C, h, w) map with ``self.fc`` (reshaped to
    ``self.start_shape``) and decode it to an image with ``self.net``."""

    fc: nn.Module
    net: nn.Module
    start_shape: tuple[int, int, int]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # channels_last inside: the convolutions skip a layout reorder each, and the thin last layer's
        # GEMM reads its input in place (benchmarks/sampling.py). Images leave in the default layout.
        x = self.fc(h).view(-1, *self.start_shape).contiguous(memory_format=torch.channels_last)
        return self.net(x).contiguous()


class ConvDecoder(DenseToMapDecoder):
    """Dense to a (C, H/2^k, W/2^k) map, then k stages that double H and W: stride-2
    transposed convolutions (``upsample="transpose"``) or nearest upsampling followed by a
    convolution (``"nearest"``, BEGAN's decoder).

    Returns pre-activation values: the caller applies sigmoid or tanh.
    """

    def __init__(
        self,
        in_features: int,
        channels: tuple[int, ...],
        out_channels: int,
        image_hw: tuple[int, int],
        *,
        kernel_size: int = 5,
        activation: str = "relu",
        norm: str = "none",
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        if upsample not in ("transpose", "nearest"):
            raise ValueError(f"upsample must be 'transpose' or 'nearest', got {upsample!r}")
        scale = 2 ** len(channels)
        h0, w0 = image_hw[0] // scale, image_hw[1] // scale
        rev = tuple(reversed(channels))  # e.g. (32, 16)
        self.start_shape = (rev[0], h0, w0)
        self.fc = nn.Sequential(
            nn.Linear(in_features, rev[0] * h0 * w0), norm_1d(norm, rev[0] * h0 * w0), _act(activation)
        )
        layers: list[nn.Module] = []
        outs = rev[1:] + (out_channels,)
        c = rev[0]
        pad = (kernel_size - 1) // 2
        out_pad = 2 - kernel_size + 2 * pad  # makes each stage exactly double H and W
        for i, out in enumerate(outs):
            if upsample == "nearest":  # no checkerboard from overlapping transposed kernels
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, out, kernel_size, padding=pad)]
            else:
                layers.append(
                    ConvTranspose2d(c, out, kernel_size, stride=2, padding=pad, output_padding=out_pad)
                )
            if i < len(outs) - 1:
                layers += [norm_2d(norm, out), _act(activation)]
            c = out
        self.net = nn.Sequential(*layers)


def _act(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name == "elu":
        return nn.ELU()
    return nn.ReLU()


class WithoutLabels(nn.Module):
    """A conditional trunk used without a class: all-zero one-hot label channels (``image=True``)
    or label features are joined to the input, as when the class is what is to be predicted."""

    def __init__(self, trunk: nn.Module, num_labels: int, out_features: int, *, image: bool = True) -> None:
        super().__init__()
        self.trunk = trunk
        self.num_labels = num_labels
        self.image = image
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.image:
            x = x.flatten(1)
        if self.num_labels:
            shape = (x.shape[0], self.num_labels, *x.shape[2:]) if self.image else (x.shape[0], self.num_labels)
            x = torch.cat([x, x.new_zeros(shape)], dim=1)
        return self.trunk(x).flatten(1)


def feature_trunk(trunk: nn.Module, out_features: int, *, num_labels: int = 0, image: bool = True) -> nn.Module:
    """``trunk`` itself when it needs no label input and takes images as they are, else a
    :class:`WithoutLabels` around it."""
    if num_labels == 0 and image:
        return trunk
    return WithoutLabels(trunk, num_labels, out_features, image=image)
