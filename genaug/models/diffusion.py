"""A small (class-conditional) denoising diffusion model: a U-Net that predicts the noise.

Ho et al. (2020), "Denoising Diffusion Probabilistic Models", trained with the cosine noise
schedule of Nichol & Dhariwal (2021) and sampled with DDIM (Song et al., 2021), whose
deterministic update makes an image a pure function of its starting noise. A conditional model
adds a class embedding to the time embedding; one extra "no class" embedding, trained by
dropping labels, allows classifier-free guidance (Ho & Salimans, 2022) at sampling time.

U-Net: conv 3x3 -> per stage ``blocks`` residual blocks (GroupNorm, SiLU, conv 3x3, the
time/class embedding added in between), then a stride-2 conv, except after the last stage
-> two residual blocks at the lowest resolution -> the stages mirrored with skip connections
and nearest-neighbour upsampling -> conv 3x3 (zero-initialised). Images are in [-1, 1].
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from genaug._validation import (
    check_choice,
    check_float,
    check_image_shape,
    check_int,
    check_int_tuple,
    check_interval,
)
from genaug.models.config import ModelConfig
from genaug.models.layers import resolve_stage_channels
from genaug.registry import register_model

SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("eps", "v")


@dataclasses.dataclass
class DiffusionConfig(ModelConfig):
    """Diffusion model and its sampler.

    Args:
        image_shape: (C, H, W); H and W divisible by patch * 2 ** (len(channels) - 1).
        num_classes: 0 for an unconditional model.
        patch: the U-Net works on patch x patch pixel blocks folded into channels
            (``pixel_unshuffle``; unfolded again at the output): 2 costs about a quarter of the
            compute of 1 at the same widths.
        channels: channels of the U-Net's stages, finest first. None: one stage per halving of
            the image size (:func:`~genaug.models.layers.stride2_stages`: two at 28x28, four at
            64x64), ``width`` channels first, doubling per stage.
        width: channels of the first stage when ``channels`` is None (default 32).
        blocks: residual blocks per stage on the way down (one more on the way up).
        emb_dim: width of the time and class embeddings.
        timesteps: diffusion steps of training.
        schedule: "cosine" (Nichol & Dhariwal) or "linear" (Ho et al., betas 1e-4 to 0.02).
        prediction: what the network predicts: "eps" (the noise) or "v" (Salimans & Ho, 2022).
        sample_steps: DDIM steps when sampling (fewer: faster, coarser).
        guidance: classifier-free guidance weight w (0: plain conditional sampling; each
            step then costs one network pass, two when w > 0).
        guidance_interval: (low, high) fractions of the diffusion time t / (timesteps - 1) at
            which guidance is applied; the other steps sample conditionally, with one pass.
            Kynkaanniemi et al. (2024) found that guidance at high noise narrows the styles and
            limited it to the middle; on MNIST the class is settled at high noise, so leaving
            that end out lowered label fidelity (README). Default (0, 1): every step.
    """

    sampling_fields: ClassVar[tuple[str, ...]] = ("sample_steps", "guidance", "guidance_interval")

    image_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 0
    patch: int = 1
    channels: tuple[int, ...] | None = None
    width: int | None = None
    blocks: int = 1
    emb_dim: int = 128
    timesteps: int = 1000
    schedule: str = "cosine"
    prediction: str = "eps"
    sample_steps: int = 20
    guidance: float = 0.0
    guidance_interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        resolve_stage_channels(self, "channels", "width", 32)
        self.channels = check_int_tuple("channels", self.channels, minimum=8)
        for c in self.channels:
            if c % 8:
                raise ValueError(f"channels must be multiples of 8 (GroupNorm groups), got {self.channels}")
        check_int("patch", self.patch, minimum=1)
        self.image_shape = check_image_shape("image_shape", self.image_shape,
                                             multiple_of=self.patch * 2 ** (len(self.channels) - 1))
        check_int("num_classes", self.num_classes, minimum=0)
        check_int("blocks", self.blocks, minimum=1)
        check_int("emb_dim", self.emb_dim, minimum=8)
        check_int("timesteps", self.timesteps, minimum=2)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("prediction", self.prediction, PREDICTIONS)
        check_int("sample_steps", self.sample_steps, minimum=1)
        if self.sample_steps > self.timesteps:
            raise ValueError(f"sample_steps must be at most timesteps ({self.timesteps}), got {self.sample_steps}")
        check_float("guidance", self.guidance, low=0.0)
        self.guidance_interval = check_interval("guidance_interval", self.guidance_interval)

    @property
    def latent_dim(self) -> int:
        """Size of the starting noise: one value per pixel."""
        c, h, w = self.image_shape
        return c * h * w


def alpha_bars(schedule: str, timesteps: int) -> torch.Tensor:
    """Cumulative signal shares alpha_bar_t for t = 0 .. timesteps - 1 (float64)."""
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, timesteps, dtype=torch.float64)
        return torch.cumprod(1.0 - betas, 0)
    s = 0.008
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1.0 - betas, 0)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (float) timesteps, as in the Transformer and DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


@register_model("diffusion", config=DiffusionConfig, generator="diffusion")
class DiffusionUNet(nn.Module):
    """``forward(x_t, t, labels)`` predicts the noise (or v) in ``x_t`` at integer steps ``t``.

    ``labels`` are class indices; the index ``num_classes`` (or None) means "no class", the
    unconditional prediction used by classifier-free guidance. ``alpha_bar`` holds the noise
    schedule (a buffer rebuilt from the config, not saved).
    """

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        c_img = cfg.image_shape[0] * cfg.patch**2
        e = cfg.emb_dim
        self.time_mlp = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, e) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(c_img, cfg.channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, c = [cfg.channels[0]], cfg.channels[0]
        for i, ch in enumerate(cfg.channels):
            for _ in range(cfg.blocks):
                self.down.append(ResBlock(c, ch, e))
                c = ch
                skips.append(c)
            if i < len(cfg.channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, e), ResBlock(c, c, e)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, ch in reversed(list(enumerate(cfg.channels))):
            for _ in range(cfg.blocks + 1):
                self.up.append(ResBlock(c + skips.pop(), ch, e))
                c = ch
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.norm_out = nn.GroupNorm(8, c)
        self.conv_out = nn.Conv2d(c, c_img, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.register_buffer("alpha_bar", alpha_bars(cfg.schedule, cfg.timesteps).float(), persistent=False)

    @property
    def null_label(self) -> int:
        return self.config.num_classes

    def embed(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.config.emb_dim))
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full((t.shape[0],), self.null_label, dtype=torch.long, device=t.device)
            emb = emb + self.class_emb(labels)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        emb = self.embed(t, labels)
        if cfg.patch > 1:
            x = F.pixel_unshuffle(x, cfg.patch)
        h = self.conv_in(x)
        hs = [h]
        blocks = iter(self.down)
        for i in range(len(cfg.channels)):
            for _ in range(cfg.blocks):
                h = next(blocks)(h, emb)
                hs.append(h)
            if i < len(cfg.channels) - 1:
                h = self.downsample[i](h)
                hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        blocks, ups = iter(self.up), iter(self.upsample)
        for i in reversed(range(len(cfg.channels))):
            for _ in range(cfg.blocks + 1):
                h = next(blocks)(torch.cat([h, hs.pop()], dim=1), emb)
            if i > 0:
                h = next(ups)(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, cfg.patch) if cfg.patch > 1 else out

    # ------------------------------------------------------------ the forward process and its inverse

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise."""
        a = self.alpha_bar[t].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to predict at x_t."""
        if self.config.prediction == "eps":
            return noise
        a = self.alpha_bar[t].view(-1, 1, 1, 1)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def predict(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None,
                guidance: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, noise) estimated from x_t, with classifier-free guidance weight ``guidance``."""
        if guidance > 0 and self.class_emb is not None and labels is not None:
            out = self(torch.cat([x, x]), torch.cat([t, t]),
                       torch.cat([labels, torch.full_like(labels, self.null_label)]))
            cond, uncond = out.chunk(2)
            out = cond + guidance * (cond - uncond)
        else:
            out = self(x, t, labels)
        a = self.alpha_bar[t].view(-1, 1, 1, 1)
        if self.config.prediction == "eps":
            x0 = (x - (1 - a).sqrt() * out) / a.sqrt()
        else:
            x0 = a.sqrt() * x - (1 - a).sqrt() * out
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return x0, eps

    def ddim_sample(self, noise: torch.Tensor, labels: torch.Tensor | None, *, steps: int | None = None,
                    guidance: float | None = None,
                    guidance_interval: tuple[float, float] | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from ``noise`` (x_T) to images in [-1, 1].

        ``steps``, ``guidance`` and ``guidance_interval`` override the config's sampler settings.
        """
        cfg = self.config
        steps = cfg.sample_steps if steps is None else steps
        guidance = cfg.guidance if guidance is None else guidance
        ts = torch.linspace(cfg.timesteps - 1, 0, steps, dtype=torch.float64).round().long().tolist()
        low, high = cfg.guidance_interval if guidance_interval is None else guidance_interval
        x = noise
        for i, t in enumerate(ts):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            w = guidance if low <= t / (cfg.timesteps - 1) <= high else 0.0
            x0, eps = self.predict(x, tt, labels, w)
            if i == len(ts) - 1:
                return x0
            a_next = self.alpha_bar[ts[i + 1]]
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return x
