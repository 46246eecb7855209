"""The training loop shared by every family: read it top to bottom."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DistributedSampler
from torchvision.utils import save_image
from tqdm.auto import tqdm

from genaug._io import check_output_path, load_training_checkpoint, output_lock, save_training_checkpoint
from genaug.checkpoint import load_module, save_module
from genaug.device import autocast, get_device, resolve_amp
from genaug.hub import load_generator
from genaug.models.classifier import Classifier
from genaug.registry import RECIPES, make_config
from genaug.train.batches import InMemoryBatches, training_batches
from genaug.train.config import TrainConfig
from genaug.train.recipes.base import NonFiniteLossError, Recipe, ema_with_warmup
from genaug.train.recipes.ssgan import (
    PseudoLabels,
    SemiSupervisedConfig,
    few_labels,
    label_with,
    pseudo_label,
    train_student,
)

CHECKPOINT_NAME = "checkpoint.pt"
#: What a run writes in its folder; a folder holding any of these holds a run.
PSEUDO_LABELS_NAME = "pseudo_labels.safetensors"
LABELLER_CHECKPOINT_NAME = "labeller_checkpoint.pt"  # the semi-supervised GAN's, until its labels are saved
RUN_FILES = (CHECKPOINT_NAME, "log.jsonl", "config.json", "model.safetensors", PSEUDO_LABELS_NAME,
             LABELLER_CHECKPOINT_NAME)
RUN_FOLDERS = ("grids", "tensorboard")


def run_files(out_dir: Path) -> list[str]:
    """The names of an earlier run's outputs found in ``out_dir``."""
    return [n for n in (*RUN_FILES, *RUN_FOLDERS) if (out_dir / n).exists()]


def check_run_folder(out_dir: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse, before any work, an output folder that would lose or mix up a run: one holding a run
    (unless ``overwrite``), or, with ``resume``, one without a checkpoint (a few-label run stopped
    while labelling has its labeller's checkpoint or its labels instead)."""
    out = Path(out_dir)
    if resume and overwrite:
        raise ValueError("give resume or overwrite, not both (CLI: --resume DIR or --overwrite)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out}: expected a folder, got a file")
    if resume:
        if not any((out / name).is_file() for name in (CHECKPOINT_NAME, LABELLER_CHECKPOINT_NAME, PSEUDO_LABELS_NAME)):
            raise FileNotFoundError(
                f"{out}: no {CHECKPOINT_NAME} to resume from (expected the folder of an earlier genaug train run)")
    elif not overwrite and run_files(out):
        raise FileExistsError(
            f"{out}: holds an earlier run ({', '.join(run_files(out))}); pass overwrite=True (CLI: --overwrite) "
            "to replace it, or resume=True (CLI: --resume DIR) to continue it")
    check_output_path(out, name="out_dir", overwrite=True, kind="folder")


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    epoch: int
    interrupted: bool
    history: list[dict[str, float]] = field(default_factory=list)


def checkpoint_config(state: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The :class:`TrainConfig` dict of a loaded training checkpoint, in this version's layout."""
    try:
        return TrainConfig.from_saved(state["config"]).to_dict()
    except ValueError as err:
        raise ValueError(f"{path}: checkpoint config is not valid in this version ({err})") from None


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed for the noise of one step: a pure function of (seed, rank, step), so resume is exact."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, dtype=np.uint64)[0] >> 1)


def seed_step(seed: int, device: torch.device) -> None:
    """Seed the default generators that a step on ``device`` draws from: the CPU one, and the
    device's own. ``torch.manual_seed`` would also queue a seed for every CUDA device, which
    on a machine without CUDA formats a stack trace each time (about 1 ms, 7% of a cVAE step)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)
    elif device.type == "mps":
        torch.mps.manual_seed(seed)


def prepare_data(data: Any) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Float images (N, C, H, W) in [0, 1], int64 labels and class names from a dataset or pair."""
    batches = training_batches(data, device=torch.device("cpu"), mode="memory")
    return batches.images, batches.labels, batches.classes


class Trainer:
    """Fits one family on labelled images.

    Args:
        config: the run's settings.
        data: any dataset of ``(image, int label)`` items (PIL images, tensors or arrays:
            ImageFolder, MNIST, CIFAR-style, Subset, ...) or an ``(images, labels)`` pair;
            images uint8 or float in [0, 1]. Kept in device memory when it fits in
            ``config.cache_mb``, else streamed through a DataLoader (``config.data``).
        out_dir: where checkpoints, the shareable generator, grids and logs go.
        data_name: recorded in the generator card as the training data.
        resume: continue from ``out_dir/checkpoint.pt`` (which must exist); a checkpoint of other
            data (image count, shape, classes, or the images the seed picks) is refused.
        overwrite: replace an earlier run in ``out_dir``; without it (or ``resume``) a folder
            holding a run is refused, so a finished run is never silently overwritten.
        command: the command line, recorded in the card.
        data_source: how the data was given (e.g. the CLI's ``--data`` and ``--data-root``), kept in
            the checkpoint so that ``genaug train --resume DIR`` can load the same data again.

    Example:
        >>> from genaug.data import MNISTSample
        >>> from genaug.train import Trainer, TrainConfig
        >>> cfg = TrainConfig(family="cvae", max_steps=5, progress=False, device="cpu")
        >>> Trainer(cfg, MNISTSample(), out_dir="runs/cvae").fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: TrainConfig,
        data: Any,
        *,
        out_dir: str | os.PathLike[str],
        data_name: str = "custom",
        resume: bool = False,
        overwrite: bool = False,
        command: str | None = None,
        data_source: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = config
        self.out_dir = Path(out_dir)
        check_run_folder(self.out_dir, resume=resume, overwrite=overwrite)
        self.overwrite = overwrite and not resume
        self.data_name = data_name
        self.command = command
        self.data_source = dict(data_source or {})
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.is_main = self.rank == 0
        self.device = get_device(config.device)
        if self.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))

        # Images in device memory when they fit in cache_mb, else streamed batch by batch.
        self.batches = training_batches(data, device=self.device, mode=config.data, cache_mb=config.cache_mb,
                                        num_workers=config.num_workers)
        self.pseudo_labels: PseudoLabels | None = None
        self.semi_supervised: dict[str, Any] = {}
        if config.labels_per_class:
            self.batches = self._label_few(self.batches, resume=resume)
        classes = self.classes = self.batches.classes
        self.skipped_files = [str(f) for f in getattr(data, "skipped_files", None) or []]
        n_local = len(self.batches) // self.world
        if n_local < config.batch_size:
            raise ValueError(
                f"batch_size must be <= the images per process ({n_local}), got {config.batch_size}"
            )
        self.steps_per_epoch = n_local // config.batch_size
        image_shape = self.batches.image_shape
        preset = config.preset
        self.model_cfg = make_config(
            preset.model, config.model_config(image_shape=image_shape, num_classes=len(classes))
        )

        # Same initial weights on every rank; DDP also broadcasts them from rank 0.
        torch.manual_seed(config.seed)
        self.recipe: Recipe = RECIPES.get_entry(preset.recipe)(
            config.recipe, model=preset.model, model_config=self.model_cfg,
            wrap=self._wrap_ddp, autocast=self._autocast(),
        )
        for net in self.recipe.nets.values():
            net.to(self.device)
        target = self.recipe.ema_target()
        self.init_provenance: dict[str, Any] = {}
        resuming = resume and (self.out_dir / CHECKPOINT_NAME).is_file()  # else it stopped while labelling
        if config.init and not resuming:  # a resumed run takes its weights from the checkpoint
            self._init_from(config.init, target)
        self.ema = (
            AveragedModel(target, multi_avg_fn=ema_with_warmup(config.ema_decay), use_buffers=True)
            if target is not None and config.ema_decay > 0
            else None
        )
        self.sampler = DistributedSampler(
            range(len(self.batches)), num_replicas=self.world, rank=self.rank,
            shuffle=True, seed=config.seed, drop_last=True,
        )
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, float]] = []
        self._stop = False
        self.last_checkpoint: tuple[Path, int] | None = None  # (path, step) of the newest one on disk
        self._check_tensorboard()
        self.writer: Any = None  # opened by fit(), once the folder is ours
        g = torch.Generator().manual_seed(config.seed + 12345)
        self.fixed_labels = self._grid_labels()
        self.fixed_noise = torch.randn(len(self.fixed_labels), self.model_cfg.latent_dim, generator=g) \
            if hasattr(self.model_cfg, "latent_dim") else None
        pick = torch.randperm(len(self.batches), generator=g)[:64]
        self.fixed_real, self.fixed_real_labels = self.batches.take(pick)
        self.judge = self._load_judge(config.judge) if config.judge else None
        if resuming:
            self.load_checkpoint(self.out_dir / CHECKPOINT_NAME)

    # ------------------------------------------------------------------ setup helpers

    def _label_few(self, batches: Any, *, resume: bool) -> InMemoryBatches:
        """Keep ``labels_per_class`` labels; a semi-supervised GAN labels the other images."""
        cfg = self.cfg
        if not isinstance(batches, InMemoryBatches):
            raise ValueError(f"labels_per_class needs the images in memory; they take more than cache_mb="
                             f"{cfg.cache_mb} MiB, so set data='memory' or a larger cache_mb")
        if self.distributed:
            raise ValueError("labels_per_class trains on one process; run it without torchrun")
        path = self.out_dir / PSEUDO_LABELS_NAME
        true = batches.labels.cpu()
        labeller_checkpoint = self.out_dir / LABELLER_CHECKPOINT_NAME
        if resume and (path.is_file() or not labeller_checkpoint.is_file()):
            if not path.is_file():
                raise FileNotFoundError(f"resuming a labels_per_class run needs {path}, which is missing")
            saved = load_file(str(path))
            pl = PseudoLabels(saved["labels"], saved["confidence"], saved["labelled"])
            if len(pl.labels) != len(true):
                raise ValueError(f"{path} labels {len(pl.labels)} images, but the data has {len(true)}")
        else:
            if self.overwrite:  # an earlier run's labeller is not this one's
                labeller_checkpoint.unlink(missing_ok=True)
            labelled = few_labels(true, cfg.labels_per_class, seed=cfg.seed)
            labeller = SemiSupervisedConfig(epochs=cfg.labeller_epochs, seed=cfg.seed, device=cfg.device,
                                            progress=cfg.progress)
            # Checkpointed: a run stopped here continues with resume=True (CLI: --resume DIR).
            pl = pseudo_label(batches.images, true, labelled, config=labeller, checkpoint=labeller_checkpoint)
            if cfg.labeller_student_steps:
                student = train_student(batches.images, pl, steps=cfg.labeller_student_steps,
                                        rounds=cfg.labeller_student_rounds, seed=cfg.seed,
                                        device=cfg.device, progress=cfg.progress)
                pl = label_with(student, batches.images, true, labelled)
        self.pseudo_labels = pl
        keep = pl.keep(cfg.min_confidence)
        withheld = torch.ones(len(true), dtype=torch.bool)
        withheld[pl.labelled] = False
        agreement = float((pl.labels[withheld] == true[withheld]).float().mean()) if withheld.any() else 1.0
        self.semi_supervised = {
            "labels_per_class": cfg.labels_per_class, "label_seed": cfg.seed,
            "labeller": "ssgan+student" if cfg.labeller_student_steps else "ssgan",
            "labeller_epochs": cfg.labeller_epochs, "labeller_student_steps": cfg.labeller_student_steps,
            "labeller_student_rounds": cfg.labeller_student_rounds,
            "min_confidence": cfg.min_confidence,
            "images": len(true), "images_kept": len(keep),
            # How often the labeller agrees with the labels it was not shown.
            "withheld_label_agreement": agreement,
            "labelled_indices": pl.labelled.tolist(),
        }
        return InMemoryBatches(batches.images[keep.to(batches.images.device)], pl.labels[keep], batches.classes,
                               self.device)

    def _save_pseudo_labels(self) -> None:
        path = self.out_dir / PSEUDO_LABELS_NAME
        if self.pseudo_labels is None or not self.is_main or path.exists():
            return
        pl = self.pseudo_labels
        tmp = path.with_name(path.name + ".tmp")
        save_file({"labels": pl.labels.contiguous(), "confidence": pl.confidence.contiguous(),
                   "labelled": pl.labelled.contiguous()}, str(tmp))
        os.replace(tmp, path)
        (self.out_dir / LABELLER_CHECKPOINT_NAME).unlink(missing_ok=True)  # the labels replace it

    def _wrap_ddp(self, module: nn.Module) -> nn.Module:
        if not self.distributed:
            return module
        module.to(self.device)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def _autocast(self) -> Any:
        """bf16 autocast for the recipe's forward passes: "auto" on CUDA only, "bf16" on any device."""
        if resolve_amp(self.device, self.cfg.amp) == "off":
            return None
        return lambda: autocast(self.device, self.cfg.amp)

    def _check_tensorboard(self) -> None:
        if self.cfg.tensorboard != "on":
            return
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise ValueError("tensorboard='on' needs the tensorboard package: pip install tensorboard") from None

    def _tensorboard(self) -> Any:
        if self.cfg.tensorboard == "off" or not self.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))

    def _clear_earlier_run(self) -> None:
        """With overwrite: remove what an earlier run left, so nothing of it mixes with this one."""
        for name in (*RUN_FILES, *RUN_FOLDERS, *self.recipe.saved_parts):
            target = self.out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()

    @property
    def step_impl(self) -> Recipe:
        """The earlier name of :attr:`recipe`."""
        return self.recipe

    def _init_from(self, name: str, target: nn.Module | None) -> None:
        """Start the generator from a saved one of the same family and model config (its sampling
        settings, such as a diffusion model's guidance, may differ: the run keeps its own)."""
        if target is None:
            raise ValueError(f"init needs a family that trains a generator, got {self.cfg.family!r}")
        gen = load_generator(name)
        family = self.cfg.preset.model
        if gen.family != family:
            raise ValueError(f"init: expected a saved {family!r} generator, got {gen.family!r} from {name!r}")
        saved, now = gen.config.architecture(), self.model_cfg.architecture()
        if saved != now:
            diff = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
            raise ValueError(
                f"init: {name!r} has a different model config; (saved, this run) differ in {diff}; "
                "set the run's model fields to the saved ones"
            )
        # A generator of the same family and config around this run's module has the saved one's keys.
        self.recipe.make_generator(target, self.classes).load_state_dict(gen.state_dict())
        prov = gen.provenance
        self.init_provenance = {"from": name, **{k: prov[k] for k in ("steps", "command") if k in prov}}

    def _load_judge(self, path: str) -> nn.Module:
        judge, _ = load_module(path)
        if not isinstance(judge, Classifier) or judge.config.num_classes != len(self.classes):
            raise ValueError(
                f"judge must be a classifier of {len(self.classes)} classes, got {type(judge).__name__} "
                f"with {getattr(judge.config, 'num_classes', '?')} classes"
            )
        return judge.to(self.device).eval()

    @torch.no_grad()
    def judge_samples(self) -> dict[str, float]:
        """Class coverage and label fidelity of the fixed-noise samples, by the judge."""
        if self.judge is None or self.recipe.ema_target() is None:
            return {}
        pred = self.judge(self.sample_fixed().to(self.device)).argmax(1).cpu()
        out = {"class_coverage": len(pred.unique()) / len(self.classes)}
        if self.fixed_labels[0] >= 0:
            out["label_fidelity"] = float((pred == self.fixed_labels).float().mean())
        return out

    def _grid_labels(self) -> torch.Tensor:
        k = len(self.classes) if getattr(self.model_cfg, "num_classes", 0) else 0
        per = self.cfg.grid_per_class
        if k:
            return torch.arange(k).repeat_interleave(per)
        return torch.full((8 * per,), -1)  # rows of 8

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "config": self.cfg.to_dict(),
            "nets": {k: v.state_dict() for k, v in self.recipe.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.recipe.optimizers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "extra": self.recipe.extra_state(),
            "rng": {"torch": torch.get_rng_state()},
            "init": self.init_provenance,
            "data": self.data_fingerprint(),
            "data_source": self.data_source,
            "model_config": self.model_cfg.to_dict(),
        }

    def data_fingerprint(self) -> dict[str, Any]:
        """What a resumed run must train on again: the image count, shape, classes, and a hash of
        the 64 images (and labels) that the seed picks for the grids, rounded to 8 bits."""
        x = self.fixed_real.detach().float().cpu().mul(255).round().to(torch.uint8)
        digest = hashlib.sha256(x.numpy().tobytes())
        digest.update(self.fixed_real_labels.cpu().to(torch.int64).numpy().tobytes())
        return {"images": len(self.batches), "image_shape": list(self.batches.image_shape),
                "classes": list(self.classes), "sample_sha256": digest.hexdigest()}

    def save_checkpoint(self) -> Path:
        path = self.out_dir / CHECKPOINT_NAME
        if self.is_main:
            save_training_checkpoint(self.state_dict(), path)
        self.last_checkpoint = (path, self.step)
        return path

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        state = load_training_checkpoint(path)
        # The model's settings are compared as the model they build (_check_model_config).
        ignored = ("epochs", "max_steps", "progress", "device", "data", "cache_mb", "num_workers", "model")
        saved_cfg = checkpoint_config(state, path)

        def flat(d: dict[str, Any]) -> dict[str, Any]:  # recipe fields beside the loop's, for the message
            return {**{k: v for k, v in d.items() if k != "recipe"}, **d["recipe"]}

        saved = {k: v for k, v in flat(saved_cfg).items() if k not in ignored}
        now = {k: v for k, v in flat(self.cfg.to_dict()).items() if k in saved}
        if saved != now:
            diff = sorted(k for k in saved if saved[k] != now.get(k))
            raise ValueError(
                f"{path}: checkpoint was written with different settings for {diff}; "
                "resume with the same config (only epochs and max_steps may change)"
            )
        saved_data, data_now = state.get("data"), self.data_fingerprint()  # absent before this check existed
        if saved_data is not None and saved_data != data_now:
            def brief(d: dict[str, Any]) -> str:
                return (f"{d['images']} images of shape {tuple(d['image_shape'])}, {len(d['classes'])} classes, "
                        f"sample hash {d['sample_sha256'][:12]}")
            source = state.get("data_source") or {}
            hint = f" (it was started with {source})" if source else ""
            raise ValueError(f"{path}: checkpoint was written for other training data{hint}: "
                             f"{brief(saved_data)}; this run has {brief(data_now)}; resume with the same data")
        self._check_model_config(state, saved_cfg["model"], path)
        for k, net in self.recipe.nets.items():
            try:
                net.load_state_dict(state["nets"][k])
            except RuntimeError as err:  # a checkpoint from before model configs were saved
                detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
                detail = detail if len(detail) <= 160 else detail[:160] + " ..."
                raise ValueError(
                    f"{path}: the checkpoint's {k} weights do not fit the model this config builds ({detail}); "
                    f"the {self.cfg.family!r} preset's model defaults may have changed since it was written: "
                    "resume with the model settings it was trained with (--set 'model={...}')"
                ) from None
        for k, opt in self.recipe.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.recipe.load_extra_state(state["extra"])
        torch.set_rng_state(state["rng"]["torch"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.init_provenance = dict(state.get("init", {}))
        self.last_checkpoint = (Path(path), self.step)

    def _check_model_config(self, state: dict[str, Any], saved_model: dict[str, Any],
                            path: str | os.PathLike[str]) -> None:
        """Refuse a checkpoint whose model was built with other settings (e.g. written before a
        preset's model defaults changed), naming them and how to resume with them."""
        def plain(d: dict[str, Any]) -> dict[str, Any]:  # as JSON, so that tuples and lists compare alike
            return json.loads(json.dumps(d))

        saved = state.get("model_config")
        if saved is None:  # written before model configs were saved: its model settings may only be
            # pinned (e.g. to a preset's former defaults); the weights then show whether they fit
            given = plain(dict(self.cfg.model))
            changed = sorted(k for k, v in plain(saved_model).items() if given.get(k, object()) != v)
            if changed:
                raise ValueError(f"{path}: checkpoint was written with different settings for ['model'] "
                                 f"({changed}); resume with the same config (only epochs and max_steps may change)")
            return
        saved, now = plain(saved), plain(self.model_cfg.to_dict())
        diff = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
        if diff:
            kept = json.dumps({k: saved[k] for k in diff if k in saved})
            raise ValueError(
                f"{path}: checkpoint's model was built with other settings for {diff} "
                f"({', '.join(f'{k}={saved.get(k)!r}, now {now.get(k)!r}' for k in diff)}), e.g. written before "
                f"the {self.cfg.family!r} preset's model defaults changed; resume with --set 'model={kept}'"
            )

    # ------------------------------------------------------------------ outputs

    def sampling_module(self) -> nn.Module | None:
        if self.ema is not None:
            return self.ema.module
        return self.recipe.ema_target()

    def generator(self) -> Any:
        """The trained generator (EMA weights when EMA is on), or None for the autoencoder."""
        module = self.sampling_module()
        if module is None:
            return None
        gen = self.recipe.make_generator(module, self.classes)
        gen.provenance = {**self._provenance(), "ema": self.ema is not None}
        return gen

    def _provenance(self) -> dict[str, Any]:
        return {
            "training_family": self.cfg.family,
            "training_data": self.data_name,
            "steps": self.step,
            "epochs": self.epoch,
            "train_config": self.cfg.to_dict(),
            **({"command": self.command} if self.command else {}),
            **({"init": self.init_provenance} if self.init_provenance else {}),
            **({"skipped_files": self.skipped_files} if self.skipped_files else {}),
            **({"semi_supervised": self.semi_supervised} if self.semi_supervised else {}),
        }

    def save_outputs(self) -> None:
        if not self.is_main:
            return
        gen = self.generator()
        model = self.cfg.preset.model
        if gen is not None:
            gen.save_pretrained(self.out_dir)
        else:
            save_module(self.recipe.nets["model"], model, self.model_cfg, self.out_dir,
                        provenance=self._provenance())
        for part in self.recipe.saved_parts:
            # e.g. the discriminator, kept for pretraining classifiers from its features.
            save_module(self.recipe.nets[part], model, self.model_cfg, self.out_dir / part, part=part,
                        provenance=self._provenance())

    @torch.no_grad()
    def write_grid(self) -> Path | None:
        """Sample grid from fixed noise, one row per class (reconstructions for the autoencoder)."""
        if not self.is_main:
            return None
        name = f"epoch_{self.epoch:03d}" if self.batch_in_epoch == 0 else f"step_{self.step:07d}"
        path = self.out_dir / "grids" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.recipe.ema_target() is None:  # no generator: real images over their reconstructions
            x = self.fixed_real[:32]
            save_image(torch.cat([x, self.recipe.reconstruct(x)]).cpu(), path, nrow=8)
            return path
        imgs = self.sample_fixed()
        save_image(imgs, path, nrow=self.cfg.grid_per_class if self.fixed_labels[0] >= 0 else 8)
        return path

    @torch.no_grad()
    def sample_fixed(self) -> torch.Tensor:
        gen = self.recipe.make_generator(self.sampling_module(), self.classes)
        return gen.decode(self.fixed_noise.to(self.device), self.fixed_labels.to(self.device)).cpu()

    @torch.no_grad()
    def diversity(self) -> float | None:
        """Mean pairwise distance of fixed-noise samples over that of real images (mode-collapse signal)."""
        if self.recipe.ema_target() is None:
            return None
        fake = self.sample_fixed().flatten(1)
        real = self.fixed_real.cpu().flatten(1)
        return float(torch.pdist(fake).mean() / torch.pdist(real).mean())

    # ------------------------------------------------------------------ the loop

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._stop = True

    def fit(self) -> TrainResult:
        """Train until ``epochs`` or ``max_steps``; returns early (checkpointed) on SIGTERM.

        Rank 0 holds a lock on the output folder meanwhile: a second run into the same folder
        is refused with an :class:`~genaug.OutputInUseError`.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        lock = output_lock(self.out_dir) if self.is_main else contextlib.nullcontext()
        old_handler = None
        with lock:
            if self.overwrite and self.is_main:
                self._clear_earlier_run()
                self.overwrite = False  # a second fit() continues this run
            self._save_pseudo_labels()
            self.writer = self._tensorboard()
            if threading.current_thread() is threading.main_thread():
                old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
            try:
                interrupted = self._loop()
            finally:
                if old_handler is not None:
                    signal.signal(signal.SIGTERM, old_handler)
                if self.writer is not None:
                    self.writer.close()
        return TrainResult(self.out_dir, self.step, self.epoch, interrupted, self.history)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This rank's image indices for ``epoch``: a function of (seed, epoch) only.

        ``sampling="uniform"``: a permutation; ``"balanced"``: as many draws, with
        replacement, each class equally likely. Both are sharded by rank.
        """
        if self.cfg.sampling == "uniform":
            self.sampler.set_epoch(epoch)
            return torch.tensor(list(self.sampler))
        labels = self.batches.labels.cpu()
        counts = torch.bincount(labels).double()
        weights = (1.0 / counts.clamp(min=1))[labels]
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        n_local = len(labels) // self.world
        order = torch.multinomial(weights, n_local * self.world, replacement=True, generator=g)
        return order[self.rank :: self.world]

    def _loop(self) -> bool:
        cfg = self.cfg
        bs = cfg.batch_size
        for net in self.recipe.nets.values():
            net.train()
        log_path = self.out_dir / "log.jsonl"
        while self.epoch < cfg.epochs:
            order = self.epoch_order(self.epoch)
            n_batches = len(order) // bs
            batches = self.batches.epoch(order, bs, self.batch_in_epoch)
            bar = tqdm(
                total=n_batches, initial=self.batch_in_epoch, desc=f"{cfg.family} epoch {self.epoch + 1}/{cfg.epochs}",
                disable=not (cfg.progress and self.is_main), dynamic_ncols=True, leave=True, file=sys.stderr,
            )
            t0, seen = time.perf_counter(), 0
            while self.batch_in_epoch < n_batches:
                x, y = next(batches)
                if cfg.recipe.input_range == "tanh":
                    x = x * 2 - 1

                # One optimisation step, its noise seeded by (seed, rank, step), at the schedule's lr.
                seed_step(step_seed(cfg.seed, self.rank, self.step), self.device)
                self._set_lr()
                losses = self.recipe.train_step(x, y, self.step)
                self._check_finite(losses)
                self._sync_buffers()
                if self.ema is not None:
                    self.ema.update_parameters(self.recipe.ema_target())
                self.step += 1
                self.batch_in_epoch += 1
                seen += bs
                bar.update(1)

                # Logging, checkpoints, stop conditions.
                stop = self._stop_requested()
                finishing = stop or bool(cfg.max_steps and self.step >= cfg.max_steps)
                if self.step % cfg.log_every == 0 or self.batch_in_epoch == n_batches or finishing:
                    row = {k: float(v) for k, v in losses.items()}
                    row.update(step=self.step, epoch=self.epoch + 1,
                               images_per_s=seen * self.world / max(time.perf_counter() - t0, 1e-9))
                    self.history.append(row)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k not in ("step", "epoch")})
                    if self.is_main:
                        with open(log_path, "a") as f:
                            f.write(json.dumps(row) + "\n")
                        if self.writer is not None:
                            for k, v in losses.items():
                                self.writer.add_scalar(f"loss/{k}", float(v), self.step)
                if finishing:
                    batches.close()  # stops the DataLoader's workers when streaming
                    bar.close()
                    self.write_grid()
                    self.save_checkpoint()
                    self.save_outputs()
                    return stop
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            bar.close()

            # End of epoch: grid, mode-collapse signal, latent histograms, checkpoint, generator.
            self.epoch += 1
            self.batch_in_epoch = 0
            self._end_of_epoch()
            self.save_checkpoint()
            self.save_outputs()
        return False

    @property
    def total_steps(self) -> int:
        """The run's steps: ``epochs`` times the steps per epoch, or ``max_steps`` if fewer."""
        total = self.cfg.epochs * self.steps_per_epoch
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def _set_lr(self) -> None:
        """Every optimizer's learning rate for this step: its initial one times the schedule's factor."""
        if self.cfg.recipe.lr_schedule == "constant":
            return
        factor = self.cfg.recipe.lr_factor(self.step, self.total_steps)
        for opt in self.recipe.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def _sync_buffers(self) -> None:
        """DDP broadcasts buffers from rank 0 at each forward, but a forward then updates
        BatchNorm statistics locally: broadcast them after the step so every rank (and the
        EMA) holds the same state at step boundaries."""
        if not self.distributed:
            return
        for net in self.recipe.nets.values():
            for buf in net.buffers():
                dist.broadcast(buf, src=0)

    def _stop_requested(self) -> bool:
        if not self.distributed:
            return self._stop
        flag = torch.tensor([1.0 if self._stop else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def _check_finite(self, losses: dict[str, torch.Tensor]) -> None:
        for name, value in losses.items():
            if not math.isfinite(float(value)):
                if self.last_checkpoint is not None:
                    path, step = self.last_checkpoint
                    kept = f"the last good checkpoint is {path} (step {step}); resume with --resume {path.parent}"
                else:
                    kept = (f"no checkpoint was written yet (checkpoint_every={self.cfg.checkpoint_every}, "
                            "no epoch finished)")
                raise NonFiniteLossError(f"non-finite loss at step {self.step + 1}: {name} = {float(value)}; {kept}")

    def _end_of_epoch(self) -> None:
        if not self.is_main:
            return
        grid = self.write_grid()
        div = self.diversity()
        row: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "grid": str(grid)}
        if div is not None:
            row["diversity"] = div
            if div < 0.5 and self.recipe.warn_low_diversity:
                tqdm.write(f"warning: sample diversity {div:.2f} of real; possible mode collapse")
        judged = self.judge_samples()
        row.update(judged)
        if judged.get("class_coverage", 1.0) < 1.0:
            tqdm.write(f"warning: samples cover {judged['class_coverage']:.0%} of the classes; possible mode collapse")
        with open(self.out_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            if div is not None:
                self.writer.add_scalar("diversity", div, self.step)
            for k, v in judged.items():
                self.writer.add_scalar(k, v, self.step)
            self.recipe.log_epoch(self.writer, self.step, self.fixed_real, self.fixed_real_labels)
