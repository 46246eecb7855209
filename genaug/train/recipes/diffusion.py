"""The diffusion model's recipe: denoising score matching at random noise levels."""

from __future__ import annotations

import dataclasses

import torch

from genaug._validation import check_choice, check_float, check_probability
from genaug.generators.diffusion import DiffusionGenerator
from genaug.registry import Preset, register_preset, register_recipe
from genaug.train.recipes.base import OneNetworkRecipe, RecipeConfig

WEIGHTINGS = ("none", "min-snr")


@dataclasses.dataclass
class DiffusionTrainConfig(RecipeConfig):
    """Diffusion training.

    Args:
        label_dropout: share of labels replaced by "no class" in each batch, which trains the
            unconditional prediction that classifier-free guidance needs (conditional models).
        weighting: "none" (the plain MSE of Ho et al.) or "min-snr" (Hang et al., 2023: each
            noise level's loss weighted by min(SNR, ``snr_gamma``) / SNR, which keeps the
            easy, nearly clean levels from dominating and converges several times faster).
        snr_gamma: the clamp of "min-snr".
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    input_range: str = "tanh"
    label_dropout: float = 0.1
    weighting: str = "min-snr"
    snr_gamma: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input_range != "tanh":
            raise ValueError(f"diffusion models take images in [-1, 1]: input_range must be 'tanh', "
                             f"got {self.input_range!r}")
        check_probability("label_dropout", self.label_dropout)
        check_choice("weighting", self.weighting, WEIGHTINGS)
        check_float("snr_gamma", self.snr_gamma, low=0.0, low_open=True)


@register_recipe("diffusion")
class DiffusionRecipe(OneNetworkRecipe):
    """Noise an image to a random step t, predict the noise (or v), minimise the weighted MSE."""

    config_cls = DiffusionTrainConfig

    def train_step(self, x, y, step):
        cfg = self.config
        unet = self.nets["model"]
        opt = self.optimizers["model"]
        n = x.shape[0]

        # A random noise level per image, and for a conditional model some labels dropped.
        t = torch.randint(0, unet.config.timesteps, (n,), device=x.device)
        noise = torch.randn_like(x)
        labels = None
        if self.conditional:
            drop = torch.rand(n, device=x.device) < cfg.label_dropout
            labels = torch.where(drop, torch.full_like(y, unet.null_label), y)

        # Weighted denoising loss.
        x_t = unet.add_noise(x, noise, t)
        with self.autocast():
            pred = self.model(x_t, t, labels)
        per_image = (pred.float() - unet.target(x, noise, t)).pow(2).flatten(1).mean(1)
        mse = per_image.mean()
        if cfg.weighting == "min-snr":
            a = unet.alpha_bar[t]
            snr = a / (1 - a)
            w = snr.clamp(max=cfg.snr_gamma) / (snr if unet.config.prediction == "eps" else snr + 1)
            loss = (w * per_image).mean()
        else:
            loss = mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), "mse": mse.detach()}

    def ema_target(self):
        return self.nets["model"]

    def make_generator(self, module, classes):
        return DiffusionGenerator(module, classes=classes if self.conditional else None, family=self.model_name)


# The U-Net on 2x2 pixel blocks, its stages at 14x14 and 7x7 on MNIST with 32 and 64 channels:
# about 130 MFLOP per network pass (370 MFLOP with patch 1 and (32, 64, 64)), so that training
# and sampling stay within reach of a CPU.
_SMALL = {"patch": 2, "blocks": 2}
register_preset("ddpm", Preset("diffusion", "diffusion", False, _SMALL))
register_preset("cddpm", Preset("diffusion", "diffusion", True, _SMALL))
