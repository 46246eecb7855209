"""What every training recipe shares: its config's optimizer fields and the Recipe interface.

A recipe is one training objective. It owns its networks and optimizers, takes one step
per batch, and says which module is averaged (EMA) and sampled from. The
:class:`~genaug.train.Trainer` loop knows nothing else about it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from genaug._validation import check_choice, check_float
from genaug.models.config import ModelConfig
from genaug.registry import build_model


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """A run stopped on SIGTERM after writing its checkpoint; call it again to continue.

    Attributes:
        checkpoint: the checkpoint file written.
        step: the number of steps it holds.
    """

    def __init__(self, checkpoint: Any, step: int, total: int) -> None:
        super().__init__(f"stopped at step {step} of {total}; checkpoint written to {checkpoint}")
        self.checkpoint, self.step, self.total = checkpoint, step, total


def ema_with_warmup(decay: float) -> Any:
    """EMA update whose decay ramps up as min(decay, (1 + n) / (10 + n)) over the first updates,
    so the average is not dominated by the random initial weights in short runs."""

    @torch.no_grad()
    def update(ema_params: list[torch.Tensor], params: list[torch.Tensor], num_averaged: Any) -> None:
        if not ema_params[0].is_floating_point():  # e.g. BatchNorm's num_batches_tracked
            torch._foreach_copy_(ema_params, params)
            return
        n = float(num_averaged)
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(ema_params, params, 1.0 - d)

    return update


Wrap = Callable[[nn.Module], nn.Module]
INPUT_RANGES = ("sigmoid", "tanh")
LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclasses.dataclass
class RecipeConfig(ModelConfig):
    """Optimizer and input settings that every recipe has; each recipe's config adds its own.

    Args:
        optimizer: "adam" or "rmsprop".
        lr: learning rate.
        betas: Adam's betas.
        input_range: "sigmoid" (images in [0, 1]) or "tanh" ([-1, 1]) as the networks see them.
        lr_schedule: "constant" (the default), or "linear" or "cosine": every optimizer's
            learning rate decays from ``lr`` to 0 over the run's steps (``epochs`` times the
            steps per epoch, or ``max_steps`` if fewer), a function of the step alone, so a run
            resumes exactly; resuming with other ``epochs`` or ``max_steps`` stretches the rest.
    """

    optimizer: str = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    input_range: str = "sigmoid"
    lr_schedule: str = "constant"

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, ("adam", "rmsprop"))
        check_float("lr", self.lr, low=0.0, low_open=True)
        if not (isinstance(self.betas, (tuple, list)) and len(self.betas) == 2):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(self.betas)
        for b in self.betas:
            check_float("betas", b, low=0.0, high=1.0, high_open=True)
        check_choice("input_range", self.input_range, INPUT_RANGES)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)

    def lr_factor(self, step: int, total: int) -> float:
        """The schedule's multiplier of ``lr`` at ``step`` (0-based) of ``total``."""
        t = min(step / max(total, 1), 1.0)
        if self.lr_schedule == "linear":
            return 1.0 - t
        if self.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        params = list(params)
        if self.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=self.lr)
        # The fused kernel (CPU since torch 2.4, and CUDA) is one pass over each parameter. On CPU it
        # does not slow down on denormal second moments, which a generator's large dense layer
        # reaches within a few hundred steps; there the for-loop step took about 4x longer.
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, fused=fused or None)


class Recipe:
    """One training objective. Subclass it, set ``config_cls`` and register it with
    :func:`~genaug.registry.register_recipe`.

    Args:
        config: the recipe's config (a ``config_cls`` instance).
        model: the registered model family it trains.
        model_config: that family's config.
        wrap: applied to each trained network (DDP under torchrun); keep the raw module in ``nets``.
        autocast: a context-manager factory for mixed precision, or None.

    Attributes:
        nets: the raw networks by name (saved in checkpoints).
        optimizers: their optimizers by name.
        saved_parts: names in ``nets`` saved beside the generator (e.g. ``"discriminator"``).
        warn_low_diversity: warn when samples are much less varied than real images.
    """

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[RecipeConfig]] = RecipeConfig
    saved_parts: ClassVar[tuple[str, ...]] = ()
    warn_low_diversity: ClassVar[bool] = True

    def __init__(self, config: RecipeConfig, *, model: str, model_config: Any, wrap: Wrap | None = None,
                 autocast: Any = None) -> None:
        if not isinstance(config, self.config_cls):
            raise TypeError(f"{type(self).__name__} expects a {self.config_cls.__name__}, got {type(config).__name__}")
        self.config = config
        self.model_name = model
        self.model_cfg = model_config
        self.wrap = wrap or (lambda m: m)
        self.autocast = autocast or contextlib.nullcontext
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    @property
    def conditional(self) -> bool:
        return getattr(self.model_cfg, "num_classes", 0) > 0

    def train_step(self, x: torch.Tensor, y: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch (``x`` in ``input_range``); returns detached losses."""
        raise NotImplementedError

    def ema_target(self) -> nn.Module | None:
        """The module whose weights are averaged and sampled from (None: no generator)."""
        return None

    def make_generator(self, module: nn.Module, classes: list[str]) -> Any:
        """A :class:`~genaug.generators.BaseGenerator` sampling ``module`` (None: no generator)."""
        return None

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor | None:
        """Reconstructions in [0, 1] of images in [0, 1], for the grids of recipes without a generator."""
        return None

    def log_epoch(self, writer: Any, step: int, real: torch.Tensor, labels: torch.Tensor) -> None:
        """Extra TensorBoard records at the end of an epoch."""

    def extra_state(self) -> dict[str, Any]:
        """Recipe state beyond weights and optimizers, saved in checkpoints."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


class OneNetworkRecipe(Recipe):
    """A recipe that trains one network, ``nets["model"]`` (an autoencoder, a VAE), with one optimizer."""

    def __init__(self, config: RecipeConfig, *, model: str, model_config: Any, wrap: Wrap | None = None,
                 autocast: Any = None) -> None:
        super().__init__(config, model=model, model_config=model_config, wrap=wrap, autocast=autocast)
        net = build_model(model, model_config)
        self.nets = {"model": net}
        self.model = self.wrap(net)
        self.optimizers = {"model": config.make_optimizer(net.parameters())}
