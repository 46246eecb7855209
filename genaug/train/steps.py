"""One training step per objective. Each step owns its networks and optimizers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from genaug.generators import BaseGenerator, GANGenerator, VAEGenerator
from genaug.models import ModelConfig, build_model
from genaug.train import losses
from genaug.train.config import TrainConfig

Wrap = Callable[[nn.Module], nn.Module]


def make_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr)
    fused = all(p.is_cuda for p in params)
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


class Step:
    """Base: ``nets`` are the raw modules (saved), ``run`` the (possibly DDP-wrapped) ones."""

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, *, wrap: Wrap, autocast: Any) -> None:
        self.cfg = cfg
        self.model_cfg = model_cfg
        self.wrap = wrap
        self.autocast = autocast or contextlib.nullcontext

    def train_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def ema_target(self) -> nn.Module | None:
        """The module whose weights are averaged and sampled from."""
        return None

    def make_generator(self, module: nn.Module, classes: list[str]) -> BaseGenerator | None:
        return None

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


class ReconstructionStep(Step):
    """Autoencoder: reconstruction loss only."""

    def __init__(self, cfg, model_cfg, *, wrap, autocast):
        super().__init__(cfg, model_cfg, wrap=wrap, autocast=autocast)
        model = build_model("autoencoder", model_cfg)
        self.nets = {"model": model}
        self.model = wrap(model)
        self.optimizers = {"model": make_optimizer(cfg, model.parameters())}

    def train_step(self, x, y, step):
        opt = self.optimizers["model"]
        with self.autocast():
            logits = self.model(x)
        loss = losses.reconstruction_loss(logits.float(), x, self.cfg.recon_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"recon": loss.detach()}

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.nets["model"](x))


class VAEStep(Step):
    """VAE / conditional VAE: reconstruction + kl_weight * KL."""

    def __init__(self, cfg, model_cfg, *, wrap, autocast):
        super().__init__(cfg, model_cfg, wrap=wrap, autocast=autocast)
        model = build_model("vae", model_cfg)
        self.nets = {"model": model}
        self.model = wrap(model)
        self.optimizers = {"model": make_optimizer(cfg, model.parameters())}
        self.conditional = model_cfg.num_classes > 0

    def train_step(self, x, y, step):
        opt = self.optimizers["model"]
        with self.autocast():
            logits, mu, logvar = self.model(x, y if self.conditional else None)
        recon = losses.reconstruction_loss(logits.float(), x, self.cfg.recon_loss)
        kl = losses.kl_divergence(mu.float(), logvar.float())
        loss = recon + self.cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}

    def ema_target(self):
        return self.nets["model"]

    def make_generator(self, module, classes):
        return VAEGenerator(module, classes=classes if self.conditional else None)

    def encode_mu(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.nets["model"].encode(x, y if self.conditional else None)


class GANStep(Step):
    """GAN, conditional GAN, DCGAN, WGAN (clip) and WGAN-GP.

    Each call is one discriminator (critic) step on the batch; every
    ``d_steps`` calls the generator takes ``g_steps`` steps.
    """

    def __init__(self, cfg, model_cfg, *, wrap, autocast):
        super().__init__(cfg, model_cfg, wrap=wrap, autocast=autocast)
        model = build_model(cfg.preset.model, model_cfg)
        self.family = cfg.preset.model
        self.nets = {"generator": model.generator, "discriminator": model.discriminator}
        self.G = wrap(model.generator)
        self.D = wrap(model.discriminator)
        self.optimizers = {
            "generator": make_optimizer(cfg, model.generator.parameters()),
            "discriminator": make_optimizer(cfg, model.discriminator.parameters()),
        }
        self.conditional = model_cfg.num_classes > 0
        self.last_g: torch.Tensor | None = None

    def _noise(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.model_cfg.latent_dim, device=device)

    def train_step(self, x, y, step):
        cfg = self.cfg
        labels = y if self.conditional else None
        opt_d, opt_g = self.optimizers["discriminator"], self.optimizers["generator"]
        wasserstein = cfg.gan_loss == "wasserstein"
        out: dict[str, torch.Tensor] = {}

        # Discriminator / critic step on real and generated images.
        with self.autocast():
            with torch.no_grad():
                fake = self.G(self._noise(x.shape[0], x.device), labels)
            real_scores = self.D(x, labels).float()
            fake_scores = self.D(fake, labels).float()
        if wasserstein:
            loss_d = losses.d_loss_wasserstein(real_scores, fake_scores)
            out["wasserstein"] = (real_scores.mean() - fake_scores.mean()).detach()
            if cfg.lipschitz == "gp":
                gp = losses.gradient_penalty(self.nets["discriminator"], x, fake.float(), labels)
                loss_d = loss_d + cfg.gp_weight * gp
                out["gp"] = gp.detach()
        else:
            loss_d = losses.d_loss_bce(real_scores, fake_scores)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if wasserstein and cfg.lipschitz == "clip":
            with torch.no_grad():
                for p in self.nets["discriminator"].parameters():
                    p.clamp_(-cfg.clip_value, cfg.clip_value)
        out["d_loss"] = loss_d.detach()

        # Generator step(s), every d_steps critic steps, after the discriminator's warm-up.
        if step >= cfg.d_warmup and (step + 1) % cfg.d_steps == 0:
            for _ in range(cfg.g_steps):
                with self.autocast():
                    fake = self.G(self._noise(x.shape[0], x.device), labels)
                    scores = self.D(fake, labels).float()
                loss_g = losses.g_loss_wasserstein(scores) if wasserstein else losses.g_loss_bce(scores)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
            self.last_g = loss_g.detach()
        if self.last_g is not None:
            out["g_loss"] = self.last_g
        return out

    def ema_target(self):
        return self.nets["generator"]

    def make_generator(self, module, classes):
        return GANGenerator(
            module, family=self.family, config=self.model_cfg,
            classes=classes if self.conditional else None,
        )


class BEGANStep(GANStep):
    """BEGAN: autoencoder discriminator with the equilibrium term k_t."""

    def __init__(self, cfg, model_cfg, *, wrap, autocast):
        super().__init__(cfg, model_cfg, wrap=wrap, autocast=autocast)
        self.k = 0.0

    def train_step(self, x, y, step):
        cfg = self.cfg
        labels = y if self.conditional else None
        opt_d, opt_g = self.optimizers["discriminator"], self.optimizers["generator"]

        # Discriminator: reconstruct real images well and generated ones badly (weighted by k).
        with self.autocast():
            with torch.no_grad():
                fake = self.G(self._noise(x.shape[0], x.device), labels)
            l_real = losses.l1_reconstruction(x, self.D(x, labels).float())
            l_fake = losses.l1_reconstruction(fake.float(), self.D(fake, labels).float())
        loss_d = l_real - self.k * l_fake
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        # Generator: make images the discriminator reconstructs well.
        for _ in range(cfg.g_steps):
            with self.autocast():
                fake = self.G(self._noise(x.shape[0], x.device), labels)
                l_g = losses.l1_reconstruction(fake.float(), self.D(fake, labels).float())
            opt_g.zero_grad(set_to_none=True)
            l_g.backward()
            opt_g.step()

        # Equilibrium: k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z))), 0, 1).
        l_real_v, l_g_v = l_real.item(), l_g.item()
        balance = cfg.began_gamma * l_real_v - l_g_v
        self.k = min(max(self.k + cfg.began_lambda_k * balance, 0.0), 1.0)
        m_global = l_real_v + abs(balance)
        dev = x.device
        return {
            "d_loss": loss_d.detach(),
            "g_loss": l_g.detach(),
            "k": torch.tensor(self.k, device=dev),
            "m_global": torch.tensor(m_global, device=dev),
        }

    def extra_state(self):
        return {"k": self.k}

    def load_extra_state(self, state):
        self.k = float(state.get("k", 0.0))


STEPS: dict[str, type[Step]] = {
    "reconstruction": ReconstructionStep,
    "vae": VAEStep,
    "gan": GANStep,
    "began": BEGANStep,
}
