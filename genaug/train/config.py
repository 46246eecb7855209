"""The training loop's configuration, and the presets that ``genaug train NAME`` takes.

:class:`TrainConfig` holds what every run has (epochs, batch size, EMA, checkpoints, seed,
device) and the preset's recipe config in ``recipe``. The recipe's own fields may also be
given flat, ``TrainConfig(family="began", began_gamma=0.7)``, and only the fields of that
preset's recipe exist: ``kl_weight`` for a GAN preset is refused, naming the fields it has.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import MISSING, dataclass, field
from typing import Any

from genaug._validation import check_choice, check_float, check_int
from genaug.device import AMP_MODES
from genaug.models.config import ModelConfig
from genaug.registry import PRESETS, RECIPES, Preset, get_model_spec, list_presets, register_preset

# Importing the built-in recipes registers them and their presets.
from genaug.train import recipes as _recipes  # noqa: F401
from genaug.train.recipes.base import RecipeConfig

FamilyPreset = Preset  # the earlier name

__all__ = ["PRESETS", "FamilyPreset", "Preset", "TrainConfig", "config_fields", "list_training_families",
           "register_preset"]


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]


def list_training_families() -> list[str]:
    """Names that ``genaug train`` and ``TrainConfig(family=...)`` take (the presets)."""
    return list_presets()


@dataclass(init=False)
class TrainConfig(ModelConfig):
    """Everything a training run needs, as primitives (saved in checkpoints and cards).

    Args:
        family: a preset (see :func:`list_training_families`): a model, a recipe and defaults.
        model: overrides for the model config (e.g. ``{"latent_dim": 32}``).
        recipe: overrides for the recipe config (a dict, or the recipe's config object);
            its fields may also be passed flat, e.g. ``lr=1e-4``.
        epochs: passes over the data.
        max_steps: stop after this many optimisation steps (0: no limit).
        batch_size: images per step (per process under DDP).
        init: a saved generator (folder or registered name, e.g. ``"mnist-cdcgan"``) of the
            same family and model config whose weights start the run (fine-tuning); the
            discriminator starts fresh. Empty: random initial weights.
        ema_decay: EMA of the generator's weights (0: off); sampling uses the EMA.
        checkpoint_every: steps between training checkpoints (0: only at epoch ends).
        log_every: steps between log lines.
        grid_per_class: samples per class in the per-epoch grid, one row each (an unconditional
            grid has 8 * grid_per_class, in rows of 8).
        seed: seeds weights, noise and data order.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        amp: "auto" (bf16 autocast on CUDA), "bf16" (bf16 autocast on any device, the CPU
            included: 1.2-1.6x the float32 training rate on a 2-core CPU with AVX512-BF16, the
            diffusion U-Net gaining most; slower on a CPU without bf16 instructions;
            ``benchmarks/train_throughput.py --amp``) or "off".
        tensorboard: "auto" (if installed), "on" or "off".
        progress: show a tqdm bar.
        judge: folder of a classifier saved with ``genaug.checkpoint.save_module``; when set,
            each epoch logs the class coverage (and, for conditional models, the label
            fidelity) of the fixed-noise samples.
        data: "auto" keeps the images in device memory when they fit in ``cache_mb`` (as
            float32) and streams them through a DataLoader otherwise; "memory" or "stream"
            forces one. Both give the same batches, so a run may resume with the other.
        cache_mb: the size (MiB of float32 images) up to which "auto" keeps data in memory.
        num_workers: DataLoader workers when streaming.
        sampling: "uniform" (each epoch a permutation of the images) or "balanced" (each
            epoch as many draws with replacement, every class equally likely: a conditional
            generator then learns its rare classes as often as the common ones).
        labels_per_class: train from this many labels per class (0: all labels). The
            labelled images are drawn by ``seed`` and the rest are used without their labels:
            a semi-supervised GAN (:func:`~genaug.train.recipes.ssgan.pseudo_label`) fitted to
            them labels every image first. Conditional families only; the images are held in
            memory. The card records the labelled indices.
        labeller_epochs: epochs of that semi-supervised GAN.
        labeller_student_steps: > 0: a fresh augmented CNN then trains this many steps of 128
            on the GAN's labels of every image and relabels them
            (:func:`~genaug.train.recipes.ssgan.train_student`); with 100 MNIST labels it was
            1 point more accurate than the GAN on the test set. 0 (the default): the GAN's labels.
        labeller_student_rounds: with ``labeller_student_steps``: CNNs trained in turn, each on
            the labels of the one before (self-training); the last one's labels are used.
        min_confidence: leave out unlabelled images that the labeller gives a lower
            probability than this (0: keep all).

    Example:
        >>> cfg = TrainConfig(family="cdcgan", epochs=3, lr=1e-4)
        >>> cfg.recipe.lr, cfg.recipe.gan_loss
        (0.0001, 'bce')
    """

    family: str = "cvae"
    model: dict[str, Any] = field(default_factory=dict)
    recipe: Any = None
    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 64
    init: str = ""
    ema_decay: float = 0.999
    checkpoint_every: int = 1000
    log_every: int = 50
    grid_per_class: int = 8
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    tensorboard: str = "auto"
    progress: bool = True
    judge: str = ""
    data: str = "auto"
    cache_mb: int = 1024
    num_workers: int = 2
    sampling: str = "uniform"
    labels_per_class: int = 0
    labeller_epochs: int = 10
    labeller_student_steps: int = 0
    labeller_student_rounds: int = 1
    min_confidence: float = 0.0

    def __init__(self, family: str = "cvae", **kwargs: Any) -> None:
        loop = {f.name: f for f in dataclasses.fields(type(self))}
        # Recipe fields given flat; None meant "the preset's default" before recipes existed.
        flat = {k: kwargs.pop(k) for k in list(kwargs) if k not in loop}
        flat = {k: v for k, v in flat.items() if v is not None}
        for name, f in loop.items():
            if name == "family":
                continue
            setattr(self, name, kwargs[name] if name in kwargs else _default(f))
        if self.ema_decay is None:
            self.ema_decay = 0.999
        self.family = family
        self._flat = flat
        self.__post_init__()

    def __post_init__(self) -> None:
        check_choice("family", self.family, list_training_families())
        preset = PRESETS[self.family]
        recipe_cls = RECIPES.get_entry(preset.recipe)
        config_cls: type[RecipeConfig] = recipe_cls.config_cls
        if isinstance(self.recipe, config_cls):
            given = self.recipe.to_dict()
            values = dict(given)
        elif self.recipe is None or isinstance(self.recipe, dict):
            given = dict(self.recipe or {})
            values = {**preset.recipe_defaults, **given}
        else:
            raise ValueError(f"recipe must be a dict of {config_cls.__name__} fields or a {config_cls.__name__}, "
                             f"got {type(self.recipe).__name__}")
        flat = self.__dict__.pop("_flat", {})
        known = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            key = unknown[0]
            owners = sorted(name for name, r in RECIPES.items()
                            if key in {f.name for f in dataclasses.fields(r.config_cls)})
            what = (f"{key} applies to the {'/'.join(o.upper() for o in owners)} objective"
                    if owners else f"{key} is not a setting")
            raise ValueError(
                f"{what}; family {self.family!r} trains {preset.recipe!r}, whose settings are the loop's "
                f"{sorted(f.name for f in dataclasses.fields(TrainConfig) if f.name != 'recipe')} and the "
                f"recipe's {sorted(known)}; got {key}={flat[key]!r}"
            )
        values.update(flat)
        self.recipe = config_cls.from_dict(values)
        if not isinstance(self.model, dict):
            raise ValueError(f"model must be a dict of model-config overrides, got {self.model!r}")
        for name in ("epochs", "batch_size", "log_every", "grid_per_class"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("max_steps", "checkpoint_every", "seed"):
            check_int(name, getattr(self, name), minimum=0)
        if not isinstance(self.init, str):
            raise ValueError(f"init must be a generator folder or name (a string), got {self.init!r}")
        check_float("ema_decay", self.ema_decay, low=0.0, high=1.0, high_open=True)
        check_choice("amp", self.amp, AMP_MODES)
        check_choice("tensorboard", self.tensorboard, ("auto", "on", "off"))
        check_choice("data", self.data, ("auto", "memory", "stream"))
        check_int("cache_mb", self.cache_mb, minimum=0)
        check_int("num_workers", self.num_workers, minimum=0)
        check_choice("sampling", self.sampling, ("uniform", "balanced"))
        check_int("labels_per_class", self.labels_per_class, minimum=0)
        check_int("labeller_epochs", self.labeller_epochs, minimum=1)
        check_int("labeller_student_steps", self.labeller_student_steps, minimum=0)
        check_int("labeller_student_rounds", self.labeller_student_rounds, minimum=1)
        if self.labeller_student_rounds > 1 and not self.labeller_student_steps:
            raise ValueError(f"labeller_student_rounds={self.labeller_student_rounds} trains that many student CNNs; "
                             "set labeller_student_steps too (got 0)")
        if self.labeller_student_steps and not self.labels_per_class:
            raise ValueError(f"labeller_student_steps={self.labeller_student_steps} relabels the images of a "
                             f"labels_per_class run; set labels_per_class too (got 0)")
        check_float("min_confidence", self.min_confidence, low=0.0, high=1.0)
        if self.labels_per_class and not preset.conditional:
            conditional = sorted(name for name, p in PRESETS.items() if p.conditional)
            raise ValueError(f"labels_per_class applies to conditional families {conditional}; family "
                             f"{self.family!r} trains without labels, got labels_per_class={self.labels_per_class}")

    def __getattr__(self, name: str) -> Any:
        # Reached only when normal lookup fails: recipe fields read flat (the earlier layout).
        recipe = self.__dict__.get("recipe")
        if not name.startswith("_") and recipe is not None and name in {f.name for f in dataclasses.fields(recipe)}:
            warnings.warn(f"TrainConfig.{name} is deprecated; read TrainConfig.recipe.{name}",
                          DeprecationWarning, stacklevel=2)
            return getattr(recipe, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def preset(self) -> Preset:
        return PRESETS[self.family]

    def model_config(self, *, image_shape: tuple[int, int, int], num_classes: int) -> dict[str, Any]:
        """The model-config dict: family defaults, data shape, then the user's overrides."""
        cfg: dict[str, Any] = {"image_shape": tuple(image_shape)}
        if "num_classes" in {f.name for f in dataclasses.fields(get_model_spec(self.preset.model).config_cls)}:
            cfg["num_classes"] = num_classes if self.preset.conditional else 0
        defaults = dict(self.preset.model_defaults)
        for key in self.model:  # the user's per-stage channels replace the preset's width for them
            if key.endswith("channels"):
                defaults.pop(key.removesuffix("channels") + "width", None)
        cfg.update(defaults)
        cfg.update(self.model)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["model"] = dict(self.model)
        d["recipe"] = self.recipe.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} expects a dict, got {type(data).__name__}")
        return cls(**data)

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> TrainConfig:
        """A config saved by this or an earlier version (whose flat layout held every
        recipe's fields, most of them unused by the saved run's recipe)."""
        data = dict(data)
        if "recipe" not in data:
            preset = PRESETS.get(data.get("family", "cvae"))
            if preset is not None:
                known = {f.name for f in dataclasses.fields(RECIPES.get_entry(preset.recipe).config_cls)}
                loop = {f.name for f in dataclasses.fields(cls)}
                for key in [k for k in data if k not in loop and k not in known]:
                    del data[key]
                if data.get("gan_loss") != "wasserstein":
                    data.pop("lipschitz", None)
        return cls(**data)


def config_fields(family: str | None = None) -> list[str]:
    """Fields that ``--set`` takes: the loop's, and the recipe's of ``family`` when given."""
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "recipe"]
    if family is not None and family in PRESETS:
        names += [f.name for f in dataclasses.fields(RECIPES.get_entry(PRESETS[family].recipe).config_cls)]
    return names
