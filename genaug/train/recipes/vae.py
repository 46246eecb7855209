"""The VAE's recipe: reconstruction plus ``kl_weight`` times the KL term."""

from __future__ import annotations

import dataclasses

import torch

from genaug._validation import check_float
from genaug.generators.vae import VAEGenerator
from genaug.registry import Preset, register_preset, register_recipe
from genaug.train import losses
from genaug.train.recipes.base import OneNetworkRecipe
from genaug.train.recipes.reconstruction import ReconstructionConfig


@dataclasses.dataclass
class VAETrainConfig(ReconstructionConfig):
    """VAE training.

    Args:
        recon_loss: "bce" or "mse".
        kl_weight: weight of KL(q(z|x) || N(0, I)).
    """

    kl_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_float("kl_weight", self.kl_weight, low=0.0)


@register_recipe("vae")
class VAERecipe(OneNetworkRecipe):
    """VAE / conditional VAE (the reparameterisation trick is in the model)."""

    config_cls = VAETrainConfig
    warn_low_diversity = False  # VAE samples are smoother than data

    def train_step(self, x, y, step):
        opt = self.optimizers["model"]
        with self.autocast():
            logits, mu, logvar = self.model(x, y if self.conditional else None)
        recon = losses.reconstruction_loss(logits.float(), x, self.config.recon_loss)
        kl = losses.kl_divergence(mu.float(), logvar.float())
        loss = recon + self.config.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), "recon": recon.detach(), "kl": kl.detach()}

    def ema_target(self):
        return self.nets["model"]

    def make_generator(self, module, classes):
        return VAEGenerator(module, classes=classes if self.conditional else None, family=self.model_name)

    def log_epoch(self, writer, step, real, labels):
        # The source checks that the codes stay close to a unit Gaussian.
        with torch.no_grad():
            mu, logvar = self.nets["model"].encode(real, labels if self.conditional else None)
        writer.add_histogram("latent/mu", mu, step)
        writer.add_histogram("latent/sigma", torch.exp(0.5 * logvar), step)


register_preset("vae", Preset("vae", "vae", False))
# A conditional VAE's decoder learns to use the label only as the KL term squeezes class
# information out of z. With kl_weight 1, after one epoch on MNIST a judge classifier put
# fewer than half of the samples in their intended class (holes of the prior decode to
# other digits); kl_weight 2 raised that markedly, at a small cost in sharpness. With
# kl_weight 2 and lr 2e-4 one epoch still left a quarter of the samples in the wrong class
# (fidelity 75%); lr 3e-3 took it to 93% and kl_weight 3 with it to 98% (README, "Training").
register_preset("cvae", Preset("vae", "vae", True, recipe_defaults={"kl_weight": 3.0, "lr": 3e-3}))
# The bundled mnist-cvae's wider model (32 channels first, doubling per stage: conv 32-64 at 28x28;
# latent 16) with kl_weight 2: slower per step than "cvae", but the preset for a good generator in a
# fixed time (README: ten minutes on a 2-core CPU). The stages still follow the image size.
# lr 1e-3, not "cvae"'s 3e-3: at 3e-3 one seed in five (seed 1 of 0-4) lost its encoder for six
# classes within 1,500 steps (every image of a class mapped to one latent mean, KL about 3 nats
# against 11-13), and no seed of 1-4 did at 1e-3, whose reconstruction loss was as low by then.
register_preset("cvae-wide", Preset("vae", "vae", True, {"width": 32, "latent_dim": 16},
                                    recipe_defaults={"kl_weight": 2.0, "lr": 1e-3}))
