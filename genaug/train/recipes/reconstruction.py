"""The convolutional autoencoder's recipe: reconstruction loss only."""

from __future__ import annotations

import dataclasses

import torch

from genaug._validation import check_choice
from genaug.registry import Preset, register_preset, register_recipe
from genaug.train import losses
from genaug.train.recipes.base import OneNetworkRecipe, RecipeConfig


@dataclasses.dataclass
class ReconstructionConfig(RecipeConfig):
    """Autoencoder training.

    Args:
        recon_loss: "bce" (on logits, targets in [0, 1]) or "mse".
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    recon_loss: str = "bce"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("recon_loss", self.recon_loss, ("bce", "mse"))
        if self.recon_loss == "bce" and self.input_range == "tanh":
            raise ValueError("recon_loss 'bce' needs input_range 'sigmoid' (targets in [0, 1]), got 'tanh'")


@register_recipe("reconstruction")
class ReconstructionRecipe(OneNetworkRecipe):
    """Autoencoder: minimise the reconstruction loss of every image."""

    config_cls = ReconstructionConfig

    def train_step(self, x, y, step):
        opt = self.optimizers["model"]
        with self.autocast():
            logits = self.model(x)
        loss = losses.reconstruction_loss(logits.float(), x, self.config.recon_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"recon": loss.detach()}

    @torch.no_grad()
    def reconstruct(self, x):
        net = self.nets["model"]
        was = net.training
        net.eval()
        try:
            return torch.sigmoid(net(x))
        finally:
            net.train(was)


register_preset("autoencoder", Preset("autoencoder", "reconstruction", False))
