"""Training configuration: one dataclass of primitives plus per-family presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from genaug._validation import check_choice, check_float, check_int
from genaug.models.config import ModelConfig


@dataclass(frozen=True)
class FamilyPreset:
    """What a training family name means: a model family, its objective and default settings."""

    model: str
    objective: str  # "reconstruction", "vae", "gan", "began"
    conditional: bool
    model_defaults: dict[str, Any] = field(default_factory=dict)
    train_defaults: dict[str, Any] = field(default_factory=dict)


_GAN_ADAM = {"optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999), "input_range": "tanh"}
# The source's advice for convolutional GANs: an all-strided discriminator with batch norm.
# Its pooling discriminator (the model default, d_arch="pool") with a 1024-unit dense layer
# overpowers the generator on MNIST within a hundred steps (D loss ~1e-3) and costs about
# twice the compute per image.
_STRIDED_D = {"d_arch": "strided", "d_channels": (64, 128), "d_dense": 0}

PRESETS: dict[str, FamilyPreset] = {}


def register_preset(name: str, preset: FamilyPreset) -> None:
    if name in PRESETS:
        raise ValueError(f"training family {name!r} is already registered")
    PRESETS[name] = preset


_VAE_ADAM = {"lr": 1e-3, "betas": (0.9, 0.999)}
register_preset(
    "autoencoder", FamilyPreset("autoencoder", "reconstruction", False, {}, {**_VAE_ADAM, "ema_decay": 0.0})
)
register_preset("vae", FamilyPreset("vae", "vae", False, {}, _VAE_ADAM))
# A conditional VAE's decoder learns to use the label only as the KL term squeezes class
# information out of z. With kl_weight 1, after one epoch on MNIST a judge classifier put
# fewer than half of the samples in their intended class (holes of the prior decode to
# other digits); kl_weight 2 raised that markedly, at a small cost in sharpness.
register_preset("cvae", FamilyPreset("vae", "vae", True, {}, {**_VAE_ADAM, "kl_weight": 2.0}))
# The MLP GAN with the source's defaults (G 1024-1024 without normalisation, D 256-256)
# collapsed on MNIST within 3 epochs (90% class coverage, TSTR 27%); batch norm in G (the
# source's advice), G 256-512-1024 and D 512-256 cover every class (TSTR 83% at 3 epochs).
_MLP = {"g_norm": "batch", "g_hidden": (256, 512, 1024), "d_hidden": (512, 256)}
register_preset("gan", FamilyPreset("gan", "gan", False, _MLP, _GAN_ADAM))
# The MLP cGAN: G takes the label joined to z (the source's cGAN); D scores it with a
# projection of a class embedding on its features (Miyato & Koyama, 2018). With the label
# joined to D's input instead (conditioning="concat"), after 3 MNIST epochs the MLP cGAN put
# 33% of its samples in the intended class (judge-FID 446, TSTR 62%), with projection 89%
# (FID 182, TSTR 87%; benchmarks/quality.py). The cDCGAN keeps "concat": with projection its
# fidelity rose from 94% to 99% but its TSTR fell from 88% to 84% at the same budget.
register_preset("cgan", FamilyPreset("gan", "gan", True, {**_MLP, "conditioning": "projection"}, _GAN_ADAM))
register_preset("dcgan", FamilyPreset("dcgan", "gan", False, {**_STRIDED_D, "d_norm": "batch"}, _GAN_ADAM))
register_preset("cdcgan", FamilyPreset("dcgan", "gan", True, {**_STRIDED_D, "d_norm": "batch"}, _GAN_ADAM))
# WGAN as in the source: weight clipping at 0.01, RMSProp with lr 0.0005, 5 critic steps per G step.
register_preset(
    "wgan",
    FamilyPreset(
        "dcgan", "gan", False, {**_STRIDED_D, "d_norm": "none"},
        {"optimizer": "rmsprop", "lr": 5e-4, "gan_loss": "wasserstein", "lipschitz": "clip",
         "d_steps": 5, "input_range": "tanh"},
    ),
)
# WGAN-GP (Gulrajani et al., 2017): gradient penalty 10, Adam(1e-4, 0.5, 0.9); no batch norm in the critic.
_WGAN_GP = {"optimizer": "adam", "lr": 1e-4, "betas": (0.5, 0.9), "gan_loss": "wasserstein",
            "lipschitz": "gp", "d_steps": 5, "input_range": "tanh"}
register_preset("wgan-gp", FamilyPreset("dcgan", "gan", False, {**_STRIDED_D, "d_norm": "layer"}, _WGAN_GP))
register_preset("cwgan-gp", FamilyPreset("dcgan", "gan", True, {**_STRIDED_D, "d_norm": "layer"}, _WGAN_GP))
# BEGAN: lr 1e-4 as in the paper; lambda_k 0.05 (the paper's 0.001 is far slower): on MNIST
# the generator first settles on blank images, which the discriminator reconstructs almost
# perfectly, and with lambda_k 0.001 k_t was still 0.05 after 1,000 steps, too weak to push
# them away. gamma 0.9 (the paper's examples use 0.3-0.7): with gamma 0.5 and lambda_k 0.01,
# 3 epochs drew mostly 1-like strokes (class coverage 80%, TSTR 22%), since generated images
# need only be half as hard to reconstruct as real ones; with 0.9 and 0.05, coverage 100%,
# TSTR 60% (benchmarks/quality.py --families began, 3 epochs).
register_preset(
    "began",
    FamilyPreset(
        "began", "began", False, {},
        {**_GAN_ADAM, "lr": 1e-4, "began_gamma": 0.9, "began_lambda_k": 0.05},
    ),
)


def list_training_families() -> list[str]:
    return sorted(PRESETS)


@dataclass
class TrainConfig(ModelConfig):
    """Everything a training run needs, as primitives (saved in checkpoints and cards).

    Args:
        family: a training family (see :func:`list_training_families`).
        model: overrides for the model config (e.g. ``{"latent_dim": 32}``).
        epochs: passes over the data.
        max_steps: stop after this many optimisation steps (0: no limit).
        batch_size: images per step (per process under DDP).
        optimizer: "adam" or "rmsprop".
        lr, betas: optimizer settings; ``None`` takes the family's default.
        input_range: "sigmoid" ([0, 1], VAEs) or "tanh" ([-1, 1], GANs); ``None``: family default.
        recon_loss: "bce" or "mse" (autoencoder and VAE).
        kl_weight: weight of the KL term (VAE; 1.0, or 2.0 for the conditional VAE).
        gan_loss: "bce" (non-saturating, the source's) or "wasserstein".
        lipschitz: "clip" (weight clipping) or "gp" (gradient penalty), for "wasserstein".
        clip_value: weight clipping bound.
        gp_weight: gradient-penalty weight.
        d_steps: discriminator (critic) steps per generator update.
        g_steps: generator steps per discriminator step (the source suggests 2 when D wins).
        began_gamma, began_lambda_k: BEGAN's diversity ratio and k_t learning rate
            (``None``: 0.9 and 0.05, the ``began`` family's defaults).
        d_warmup: discriminator-only steps before the generator's first update (GAN
            objective); lets a fresh discriminator catch up with an ``init`` generator.
        init: a saved generator (folder or registered name, e.g. ``"mnist-cdcgan"``) of the
            same family and model config whose weights start the run (fine-tuning); the
            discriminator starts fresh. Empty: random initial weights.
        ema_decay: EMA of the generator's weights (0: off); sampling uses the EMA.
        checkpoint_every: steps between training checkpoints (0: only at epoch ends).
        log_every: steps between log lines.
        grid_per_class: samples per row of the per-epoch grid.
        seed: seeds weights, noise and data order.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        amp: "auto" (bf16 autocast on CUDA) or "off".
        tensorboard: "auto" (if installed), "on" or "off".
        progress: show a tqdm bar.
        judge: folder of a classifier saved with ``genaug.checkpoint.save_module``; when set,
            each epoch logs the class coverage (and, for conditional models, the label
            fidelity) of the fixed-noise samples.
    """

    family: str = "cvae"
    model: dict[str, Any] = field(default_factory=dict)
    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 64
    optimizer: str | None = None
    lr: float | None = None
    betas: tuple[float, float] | None = None
    input_range: str | None = None
    recon_loss: str = "bce"
    kl_weight: float | None = None
    gan_loss: str | None = None
    lipschitz: str | None = None
    clip_value: float = 0.01
    gp_weight: float = 10.0
    d_steps: int | None = None
    g_steps: int = 1
    began_gamma: float | None = None
    began_lambda_k: float | None = None
    d_warmup: int = 0
    init: str = ""
    ema_decay: float | None = None
    checkpoint_every: int = 1000
    log_every: int = 50
    grid_per_class: int = 8
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    tensorboard: str = "auto"
    progress: bool = True
    judge: str = ""

    def __post_init__(self) -> None:
        check_choice("family", self.family, list_training_families())
        preset = PRESETS[self.family]
        defaults = {"optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999), "input_range": "sigmoid",
                    "gan_loss": "bce", "lipschitz": "clip", "d_steps": 1, "ema_decay": 0.999,
                    "kl_weight": 1.0, "began_gamma": 0.5, "began_lambda_k": 0.001}
        defaults.update(preset.train_defaults)
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if not isinstance(self.model, dict):
            raise ValueError(f"model must be a dict of model-config overrides, got {self.model!r}")
        for name in ("epochs", "batch_size", "d_steps", "g_steps", "log_every", "grid_per_class"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("max_steps", "checkpoint_every", "seed", "d_warmup"):
            check_int(name, getattr(self, name), minimum=0)
        check_choice("optimizer", self.optimizer, ("adam", "rmsprop"))
        check_float("lr", self.lr, low=0.0, low_open=True)
        if not (isinstance(self.betas, (tuple, list)) and len(self.betas) == 2):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(self.betas)
        for b in self.betas:
            check_float("betas", b, low=0.0, high=1.0, high_open=True)
        check_choice("input_range", self.input_range, ("sigmoid", "tanh"))
        check_choice("recon_loss", self.recon_loss, ("bce", "mse"))
        check_float("kl_weight", self.kl_weight, low=0.0)
        check_choice("gan_loss", self.gan_loss, ("bce", "wasserstein"))
        check_choice("lipschitz", self.lipschitz, ("clip", "gp"))
        check_float("clip_value", self.clip_value, low=0.0, low_open=True)
        check_float("gp_weight", self.gp_weight, low=0.0)
        check_float("began_gamma", self.began_gamma, low=0.0, high=1.0, low_open=True)
        check_float("began_lambda_k", self.began_lambda_k, low=0.0)
        if self.d_warmup and preset.objective != "gan":
            raise ValueError(
                f"d_warmup applies to the GAN objective; family {self.family!r} trains "
                f"{preset.objective!r}, got d_warmup={self.d_warmup}"
            )
        if not isinstance(self.init, str):
            raise ValueError(f"init must be a generator folder or name (a string), got {self.init!r}")
        check_float("ema_decay", self.ema_decay, low=0.0, high=1.0, high_open=True)
        check_choice("amp", self.amp, ("auto", "off"))
        check_choice("tensorboard", self.tensorboard, ("auto", "on", "off"))
        if self.recon_loss == "bce" and self.input_range == "tanh" and preset.objective in ("vae", "reconstruction"):
            raise ValueError("recon_loss 'bce' needs input_range 'sigmoid' (targets in [0, 1]), got 'tanh'")

    @property
    def preset(self) -> FamilyPreset:
        return PRESETS[self.family]

    def model_config(self, *, image_shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
        """The model-config dict: family defaults, data shape, then the user's overrides."""
        cfg: dict[str, Any] = {"image_shape": tuple(image_shape)}
        if self.preset.model != "autoencoder":
            cfg["num_classes"] = num_classes if self.preset.conditional else 0
        cfg.update(self.preset.model_defaults)
        cfg.update(self.model)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["model"] = dict(self.model)
        return d


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]
