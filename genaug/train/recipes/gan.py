"""The GAN recipe: GAN, conditional GAN, DCGAN, WGAN (weight clipping) and WGAN-GP.

The loss and the Lipschitz constraint are small strategy objects chosen once from the
config (``gan_loss``, ``lipschitz``); the step itself has no branches on them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from genaug._validation import check_choice, check_float, check_int
from genaug.generators.gan import GANGenerator
from genaug.registry import Preset, build_model, register_preset, register_recipe
from genaug.train import losses
from genaug.train.recipes.base import Recipe, RecipeConfig

# ---------------------------------------------------------------- strategies


class NonSaturatingLoss:
    """The source's GAN loss: BCE(D(x), 1) + BCE(D(G(z)), 0) for D; BCE(D(G(z)), 1) for G."""

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, logs: dict[str, torch.Tensor]) -> torch.Tensor:
        return losses.d_loss_bce(real, fake)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return losses.g_loss_bce(fake)


class WassersteinLoss:
    """WGAN: the critic maximises E[D(x)] - E[D(G(z))]; logs that estimate as ``wasserstein``."""

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor, logs: dict[str, torch.Tensor]) -> torch.Tensor:
        logs["wasserstein"] = (real.mean() - fake.mean()).detach()
        return losses.d_loss_wasserstein(real, fake)

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return losses.g_loss_wasserstein(fake)


class NoConstraint:
    def penalty(self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: Any,
                logs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return None

    def after_step(self, critic: nn.Module) -> None:
        pass


class WeightClipping(NoConstraint):
    """WGAN's weight clipping to [-clip_value, clip_value] after every critic step."""

    def __init__(self, clip_value: float) -> None:
        self.clip_value = clip_value

    @torch.no_grad()
    def after_step(self, critic: nn.Module) -> None:
        for p in critic.parameters():
            p.clamp_(-self.clip_value, self.clip_value)


class GradientPenalty(NoConstraint):
    """WGAN-GP's penalty ``weight * (||grad D(x_hat)|| - 1)^2`` on interpolates; logs ``gp``."""

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def penalty(self, critic, real, fake, labels, logs):
        gp = losses.gradient_penalty(critic, real, fake, labels)
        logs["gp"] = gp.detach()
        return self.weight * gp


GAN_LOSSES = {"bce": NonSaturatingLoss, "wasserstein": WassersteinLoss}
LIPSCHITZ = ("none", "clip", "gp")


# ---------------------------------------------------------------- config


@dataclasses.dataclass
class GANTrainConfig(RecipeConfig):
    """GAN training (the source's advice by default: Adam(2e-4, beta1 = 0.5), inputs in [-1, 1]).

    Args:
        gan_loss: "bce" (non-saturating, the source's) or "wasserstein".
        lipschitz: the critic's constraint with "wasserstein": "clip" (weight clipping, the
            default there) or "gp" (gradient penalty); "none" (the only value with "bce").
        clip_value: weight-clipping bound.
        gp_weight: gradient-penalty weight.
        d_steps: discriminator (critic) steps per generator update.
        g_steps: generator steps per update (the source suggests 2 when D wins).
        d_warmup: discriminator-only steps before the generator's first update; lets a
            fresh discriminator catch up with an ``init`` generator.
    """

    input_range: str = "tanh"
    gan_loss: str = "bce"
    lipschitz: str | None = None
    clip_value: float = 0.01
    gp_weight: float = 10.0
    d_steps: int = 1
    g_steps: int = 1
    d_warmup: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("gan_loss", self.gan_loss, tuple(GAN_LOSSES))
        wasserstein = self.gan_loss == "wasserstein"
        if self.lipschitz is None:
            self.lipschitz = "clip" if wasserstein else "none"
        check_choice("lipschitz", self.lipschitz, LIPSCHITZ)
        if not wasserstein and self.lipschitz != "none":
            raise ValueError(f"lipschitz {self.lipschitz!r} applies to gan_loss 'wasserstein'; "
                             f"with gan_loss {self.gan_loss!r} it must be 'none'")
        check_float("clip_value", self.clip_value, low=0.0, low_open=True)
        check_float("gp_weight", self.gp_weight, low=0.0)
        check_int("d_steps", self.d_steps, minimum=1)
        check_int("g_steps", self.g_steps, minimum=1)
        check_int("d_warmup", self.d_warmup, minimum=0)

    def constraint(self) -> NoConstraint:
        if self.lipschitz == "clip":
            return WeightClipping(self.clip_value)
        if self.lipschitz == "gp":
            return GradientPenalty(self.gp_weight)
        return NoConstraint()


# ---------------------------------------------------------------- recipes


class AdversarialRecipe(Recipe):
    """What GAN-style recipes share: a model with ``generator`` and ``discriminator``, one
    optimizer each, the generator averaged and sampled, the discriminator saved beside it."""

    saved_parts = ("discriminator",)

    def __init__(self, config, *, model, model_config, wrap=None, autocast=None):
        super().__init__(config, model=model, model_config=model_config, wrap=wrap, autocast=autocast)
        net = build_model(model, model_config)
        self.nets = {"generator": net.generator, "discriminator": net.discriminator}
        self.G = self.wrap(net.generator)
        self.D = self.wrap(net.discriminator)
        self.optimizers = {
            "generator": config.make_optimizer(net.generator.parameters()),
            "discriminator": config.make_optimizer(net.discriminator.parameters()),
        }

    def noise(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.model_cfg.latent_dim, device=device)

    def ema_target(self):
        return self.nets["generator"]

    def make_generator(self, module, classes):
        return GANGenerator(module, family=self.model_name, config=self.model_cfg,
                            classes=classes if self.conditional else None)


@register_recipe("gan")
class GANRecipe(AdversarialRecipe):
    """Each call is one discriminator (critic) step on the batch; every ``d_steps`` calls,
    after ``d_warmup``, the generator takes ``g_steps`` steps."""

    config_cls = GANTrainConfig

    def __init__(self, config, *, model, model_config, wrap=None, autocast=None):
        super().__init__(config, model=model, model_config=model_config, wrap=wrap, autocast=autocast)
        self.loss = GAN_LOSSES[config.gan_loss]()
        self.constraint = config.constraint()
        self.last_g: torch.Tensor | None = None

    def train_step(self, x, y, step):
        cfg = self.config
        labels = y if self.conditional else None
        opt_d, opt_g = self.optimizers["discriminator"], self.optimizers["generator"]
        out: dict[str, torch.Tensor] = {}

        # Discriminator / critic step on real and generated images.
        with self.autocast():
            with torch.no_grad():
                fake = self.G(self.noise(x.shape[0], x.device), labels)
            real_scores = self.D(x, labels).float()
            fake_scores = self.D(fake, labels).float()
        loss_d = self.loss.d_loss(real_scores, fake_scores, out)
        penalty = self.constraint.penalty(self.nets["discriminator"], x, fake.float(), labels, out)
        if penalty is not None:
            loss_d = loss_d + penalty
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        self.constraint.after_step(self.nets["discriminator"])
        out["d_loss"] = loss_d.detach()

        # Generator step(s), every d_steps critic steps, after the discriminator's warm-up.
        if step >= cfg.d_warmup and (step + 1) % cfg.d_steps == 0:
            for _ in range(cfg.g_steps):
                with self.autocast():
                    fake = self.G(self.noise(x.shape[0], x.device), labels)
                    scores = self.D(fake, labels).float()
                loss_g = self.loss.g_loss(scores)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
            self.last_g = loss_g.detach()
        if self.last_g is not None:
            out["g_loss"] = self.last_g
        return out


# ---------------------------------------------------------------- presets

_ADAM = {"lr": 2e-4, "betas": (0.5, 0.999)}
# The source's advice for convolutional GANs: an all-strided discriminator with batch norm.
# Its pooling discriminator (the model default, d_arch="pool") with a 1024-unit dense layer
# overpowers the generator on MNIST within a hundred steps (D loss ~1e-3) and costs about
# twice the compute per image.
_STRIDED_D = {"d_arch": "strided", "d_width": 64, "d_dense": 0}
# The MLP GAN with the source's defaults (G 1024-1024 without normalisation, D 256-256)
# collapsed on MNIST within 3 epochs (90% class coverage, TSTR 27%); batch norm in G (the
# source's advice), G 256-512-1024 and D 512-256 cover every class (TSTR 83% at 3 epochs).
_MLP = {"g_norm": "batch", "g_hidden": (256, 512, 1024), "d_hidden": (512, 256)}
register_preset("gan", Preset("gan", "gan", False, _MLP, _ADAM))
# The MLP cGAN: G takes the label joined to z (the source's cGAN); D scores it with a
# projection of a class embedding on its features (Miyato & Koyama, 2018). With the label
# joined to D's input instead (conditioning="concat"), after 3 MNIST epochs the MLP cGAN put
# 33% of its samples in the intended class (judge-FID 446, TSTR 62%), with projection 89%
# (FID 182, TSTR 87%; benchmarks/quality.py). The cDCGAN keeps "concat": with projection its
# fidelity rose from 94% to 99% but its TSTR fell from 88% to 84% at the same budget.
register_preset("cgan", Preset("gan", "gan", True, {**_MLP, "conditioning": "projection"}, _ADAM))
register_preset("dcgan", Preset("dcgan", "gan", False, {**_STRIDED_D, "d_norm": "batch"}, _ADAM))
register_preset("cdcgan", Preset("dcgan", "gan", True, {**_STRIDED_D, "d_norm": "batch"}, _ADAM))
# WGAN as in the source: weight clipping at 0.01, RMSProp with lr 0.0005, 5 critic steps per G step.
register_preset("wgan", Preset("dcgan", "gan", False, {**_STRIDED_D, "d_norm": "none"},
                               {"optimizer": "rmsprop", "lr": 5e-4, "gan_loss": "wasserstein",
                                "lipschitz": "clip", "d_steps": 5}))
# WGAN-GP (Gulrajani et al., 2017): gradient penalty 10, Adam(1e-4, 0.5, 0.9); no batch norm in the critic.
_WGAN_GP = {"lr": 1e-4, "betas": (0.5, 0.9), "gan_loss": "wasserstein", "lipschitz": "gp", "d_steps": 5}
register_preset("wgan-gp", Preset("dcgan", "gan", False, {**_STRIDED_D, "d_norm": "layer"}, _WGAN_GP))
register_preset("cwgan-gp", Preset("dcgan", "gan", True, {**_STRIDED_D, "d_norm": "layer"}, _WGAN_GP))
