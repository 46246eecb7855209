"""Command line: ``genaug train | sample | export | pretrain | judge | prior | evaluate | list``.

Every mistake in the arguments, the files they name or the outputs they would write is found
before any long work, and reported as one line on stderr with exit status 2. A run that fails
later (a non-finite loss, a full disk) reports one line with exit status 1. Set
``GENAUG_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from genaug._io import DiskFullError, OutputInUseError, atomic_write, check_output_path
from genaug.device import AMP_MODES
from genaug.train.config import TrainConfig, config_fields, list_training_families

#: 'pretrain ssgan' keeps the GAN's checkpoint here (in --out); --resume continues from it.
SSGAN_CHECKPOINT = "ssgan_checkpoint.pt"
#: Exceptions that mean "the arguments, or what they name, are wrong": exit 2.
USAGE_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                NotADirectoryError, OutputInUseError)


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line: ``genaug export: error: --out x.h5: exists; ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def _float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, got {text}")
        return value

    return parse


def _freeze(text: str) -> str | int:
    if text in ("none", "all"):
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"expected 'none', 'all' or a number of layers N >= 0, got {text!r}")


def _device(text: str) -> str:
    from genaug.device import get_device

    try:
        get_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _fraction(text: str) -> float:
    value = _float_in(0.0, 1.0, low_open=True)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text}")
    return value


COUNT = _int_at_least(1)
FRACTION = _fraction
DATA_HELP = ("'mnist', 'sample' (bundled), a folder of class sub-folders, an .npz with 'images' and 'labels', "
             "or a genaug .h5 file")
SEED = _int_at_least(0)
TRUNCATION = _float_in(0.0, 1.0, low_open=True)


def field_values(flag: str, items: list[str], fields: list[str] | None = None) -> dict[str, Any]:
    """``["sample_steps=40", ...]`` as a dict, each value read as JSON where it parses (else a string).

    With ``fields``, every FIELD must be one of them; a bad item raises ``ValueError`` naming ``flag``.
    """
    values: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or (fields is not None and key not in fields):
            expected = f"FIELD=VALUE with FIELD one of {fields}" if fields is not None else "FIELD=VALUE"
            raise ValueError(f"{flag} expects {expected}, got {item!r}")
        try:
            values[key] = json.loads(value)
        except json.JSONDecodeError:
            values[key] = value
    return values


def _command_line() -> str:
    """This invocation as a shell command, recorded in cards to reproduce a run."""
    return "genaug " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _existing(flag: str, path: str | None, *, kind: str = "any") -> None:
    """Refuse a path given to ``flag`` that doesn't exist, or is a file where a folder is expected."""
    if path is None:
        return
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{flag} {path}: no such file or folder")
    if kind == "folder" and not p.is_dir():
        raise ValueError(f"{flag} {path}: expected a folder, got a file")
    if kind == "file" and p.is_dir():
        raise ValueError(f"{flag} {path}: expected a file, got a folder")


def _run_folder_free(flag: str, path: str | os.PathLike[str], overwrite: bool) -> None:
    """An output folder must not hold earlier output unless ``--overwrite``."""
    p = Path(path)
    if p.is_dir() and any(p.iterdir()) and not overwrite:
        raise FileExistsError(f"{flag} {path}: the folder holds earlier output; pass --overwrite to replace it")
    check_output_path(p, name=flag, overwrite=True, kind="folder")


def _data_options(args: argparse.Namespace) -> dict[str, Any]:
    """What --resize, --mode, --classes and --skip-bad-files ask of the data."""
    return {"resize": args.resize, "mode": args.mode, "classes": args.classes, "skip_bad_files": args.skip_bad_files}


def _load_data(args: argparse.Namespace) -> tuple[Any, str]:
    from genaug.data.sources import resolve_data

    return resolve_data(args.data, args.data_root, download=args.download, **_data_options(args))


def _saved_run(out: Path) -> dict[str, Any] | None:
    """The settings and data source in a run folder's checkpoint (None without one: a run
    stopped while its labeller trained, or a checkpoint from before sources were kept)."""
    from genaug._io import load_training_checkpoint
    from genaug.train.trainer import CHECKPOINT_NAME, checkpoint_config

    path = out / CHECKPOINT_NAME
    if not path.is_file():
        return None
    state = load_training_checkpoint(path, mmap=True)  # the settings only: the Trainer reads the weights
    if not isinstance(state.get("config"), dict) or "family" not in state["config"]:
        raise ValueError(f"{path}: not a genaug train checkpoint (no config with a family)")
    return {"config": checkpoint_config(state, path), "data_source": state.get("data_source") or {}}


def _train(args: argparse.Namespace) -> int:
    from genaug.train import Trainer, TrainingInterrupted
    from genaug.train.trainer import check_run_folder

    if args.resume and args.overwrite:
        raise ValueError("--resume DIR continues a run and --overwrite replaces one; give one of them")
    if args.resume and args.out is not None and Path(args.out) != Path(args.resume):
        raise ValueError(f"--resume {args.resume} writes into that folder; --out {args.out} names another")
    out = Path(args.resume or args.out or "runs/train")
    check_run_folder(out, resume=bool(args.resume), overwrite=args.overwrite)
    # A resumed run starts from its own settings and data; what the command line gives replaces them.
    saved = _saved_run(out) if args.resume else None
    if saved is not None:
        if args.family is not None and args.family != saved["config"]["family"]:
            raise ValueError(f"--resume {out} continues a {saved['config']['family']!r} run; FAMILY {args.family!r} "
                             "names another (leave FAMILY out to continue it)")
        args.family = saved["config"]["family"]
    if args.family is None:
        raise ValueError(f"give FAMILY, one of {list_training_families()}"
                         + (f" (--resume {out} holds no checkpoint to take it from)" if args.resume else ""))
    if args.data is None:
        source = (saved or {}).get("data_source") or {}
        if saved is not None and not source:
            raise ValueError(f"--resume {out}: its checkpoint does not record the data it was trained on; "
                             "give --data (and --data-root) as in the run's first command")
        for key, value in (source or {"data": "sample"}).items():
            setattr(args, key, value)
    settings: dict[str, Any] = dict(saved["config"]) if saved else {}
    if args.config:
        _existing("--config", args.config, kind="file")
        try:
            from_file = json.loads(Path(args.config).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"--config {args.config}: cannot read a JSON object ({err})") from None
        if not isinstance(from_file, dict):
            raise ValueError(f"--config {args.config}: expected a JSON object, got {type(from_file).__name__}")
        settings.update(from_file)
    settings.update(field_values("--set", args.set or [], config_fields(args.family)))
    settings["family"] = args.family
    for key in ("epochs", "batch_size", "seed", "max_steps", "device", "labels_per_class", "labeller_epochs",
                "labeller_student_steps", "labeller_student_rounds", "min_confidence"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.no_progress:
        settings["progress"] = False
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    try:
        cfg = TrainConfig.from_dict(settings)
        if distributed:
            _init_distributed(cfg)
        data, data_name = _load_data(args)
        try:
            source = {"data": args.data, "data_root": args.data_root, **_data_options(args)}
            trainer = Trainer(cfg, data, out_dir=out, data_name=data_name, resume=bool(args.resume),
                              overwrite=args.overwrite, command=_command_line(), data_source=source)
        except TrainingInterrupted as err:  # SIGTERM while the semi-supervised GAN labelled the images
            print(f"{args.family}: interrupted while labelling the images, at labeller step {err.step} of "
                  f"{err.total} (checkpoint saved, resume with --resume {out})")
            return 0
        result = trainer.fit()
    finally:
        if distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    state = f"interrupted (checkpoint saved; continue with: genaug train --resume {out})" if result.interrupted \
        else "done"
    print(f"{args.family}: {state} at step {result.step}, epoch {result.epoch}; outputs in {out}")
    return 0


def _init_distributed(cfg: TrainConfig) -> None:
    import torch
    import torch.distributed as dist

    from genaug.device import get_device

    backend = "nccl" if get_device(cfg.device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend)


def _numbers(flag: str, text: str) -> list[float]:
    """A comma-separated list of numbers given to ``flag``."""
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} expects comma-separated numbers, got {text!r}") from None


def _open_generator(args: argparse.Namespace, device: Any):
    """The generator named by ``--generator``; several ``--generator`` make a mixture."""
    from genaug.generators import MixtureGenerator
    from genaug.hub import load_generator

    names = args.generator
    weights = None
    for name in names:
        _check_generator_name(name)
    if args.mix_weights is not None:
        if len(names) < 2:
            raise ValueError(f"--mix-weights needs two or more --generator, got {len(names)}")
        weights = _numbers("--mix-weights", args.mix_weights)
        if len(weights) != len(names):
            raise ValueError(f"--mix-weights expects one number per --generator ({len(names)}), got {len(weights)}")
    if len(names) == 1:
        gen = load_generator(names[0], device=device)
    else:
        gen = MixtureGenerator([load_generator(n, device=device) for n in names], weights=weights)
    return gen.set_amp(args.amp)


def _check_generator_name(name: str) -> None:
    from genaug.registry import NAMED

    if name not in NAMED and not Path(name).exists():
        raise FileNotFoundError(
            f"--generator {name}: no registered generator of that name and no such file or folder; "
            f"registered names: {sorted(NAMED)}")


def _generator_name(args: argparse.Namespace) -> str:
    return " + ".join(str(n) for n in args.generator)


def _image_path(flag: str, path: str) -> str:
    """The image format of ``path`` by its suffix (as PIL names it), refusing unknown suffixes."""
    from PIL import Image

    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{flag} {path}: expected an image file name ending in .png, .jpg or another "
                         f"suffix PIL writes, got suffix {Path(path).suffix!r}")
    return fmt


def _sample(args: argparse.Namespace) -> int:
    import torch
    from torchvision.utils import save_image

    fmt = _image_path("--out", args.out)
    check_output_path(args.out, name="--out", overwrite=args.overwrite, overwrite_hint="--overwrite")
    gen = _open_generator(args, args.device)
    if gen.num_classes == 0:
        labels = torch.full((args.per_class * 8,), -1)
    else:
        labels = torch.arange(gen.num_classes).repeat_interleave(args.per_class)
    g = torch.Generator().manual_seed(args.seed)
    images = gen.sample(labels, generator=g, truncation=args.truncation)
    nrow = args.per_class if gen.num_classes else 8
    atomic_write(Path(args.out), lambda tmp: save_image(images.cpu(), tmp, nrow=nrow, format=fmt))
    print(f"wrote {args.out}: {len(labels)} samples, one row per class")
    return 0


def _export(args: argparse.Namespace) -> int:
    from genaug.data.hdf5 import export_hdf5, export_sharded

    if Path(args.out).suffix not in (".h5", ".hdf5"):
        raise ValueError(f"--out {args.out}: expected a file name ending in .h5 or .hdf5")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues an interrupted export and --overwrite replaces a finished one; "
                         "give one of them")
    check_output_path(args.out, name="--out", overwrite=args.overwrite, overwrite_hint="--overwrite")
    if args.class_weights and args.n is None:
        raise ValueError("--class-weights goes with --num-samples N (with --per-class every class gets N)")
    weights = _numbers("--class-weights", args.class_weights) if args.class_weights else None
    if args.min_confidence is not None and not args.judge:
        raise ValueError("--min-confidence needs --judge DIR (a classifier saved with save_module)")
    if args.judge and args.min_confidence is None:
        raise ValueError("--judge is used with --min-confidence; give both or neither")
    if args.judge:
        from genaug.registry import resolve_model_path

        _existing("--judge", str(resolve_model_path(args.judge)))
    if args.distributed and "WORLD_SIZE" not in os.environ:
        raise ValueError("--distributed runs under torchrun (torchrun --nproc-per-node K -m genaug.cli export "
                         "--distributed ...); WORLD_SIZE is not set")
    options = dict(
        per_class=args.per_class, n=args.n, class_weights=weights, seed=args.seed,
        batch_size=args.batch_size, truncation=args.truncation, compression=args.compression,
        chunk_size=args.chunk_size, with_latents=args.with_latents, overwrite=args.overwrite,
        resume=args.resume, generator_name=_generator_name(args), progress=not args.no_progress,
    )
    def open_generator(device: str):
        gen = _open_generator(args, device)
        if args.min_confidence is None:
            return gen
        from genaug.checkpoint import load_module
        from genaug.generators import FilterConfig, FilteredGenerator
        from genaug.registry import resolve_model_path

        judge, _ = load_module(resolve_model_path(args.judge))
        return FilteredGenerator(gen, judge.to(gen.device), config=FilterConfig(min_confidence=args.min_confidence))

    if args.distributed:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        try:
            device = args.device
            if device == "auto":
                import torch

                device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
            path = export_sharded(open_generator(device), args.out, **options)
        finally:
            dist.destroy_process_group()
    else:
        path = export_hdf5(open_generator(args.device), args.out, **options)
    if not args.distributed or int(os.environ.get("RANK", 0)) == 0:
        print(f"wrote {path}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import TensorDataset

    from genaug.data.sources import labelled_tensors as as_tensors
    from genaug.metrics import accuracy, train_classifier
    from genaug.pretrain import build_classifier, few_label_indices, load_backbone
    from genaug.train import Trainer
    from genaug.train.trainer import CHECKPOINT_NAME

    _existing("--backbone", args.backbone, kind="folder")
    if args.backbone and args.family == "ssgan":
        raise ValueError("--backbone is for the pretraining families; ssgan trains its own discriminator")
    if args.student_rounds > 1 and not args.student_steps:
        raise ValueError(f"--student-rounds {args.student_rounds} trains that many student CNNs: it needs "
                         "--student-steps N")
    if args.student_steps and args.family != "ssgan":
        raise ValueError(f"--student-steps trains a CNN on a semi-supervised GAN's labels: it needs FAMILY ssgan, "
                         f"got {args.family}")
    if args.resume:
        if args.overwrite:
            raise ValueError("--resume DIR continues a run and --overwrite replaces one; give one of them")
        if args.out is not None and Path(args.out) != Path(args.resume):
            raise ValueError(f"--resume {args.resume} writes into that folder; --out {args.out} names another")
        if args.backbone:
            raise ValueError("--resume continues a pretraining run; --backbone skips pretraining")
        args.out = args.resume
        wanted = Path(args.out) / (SSGAN_CHECKPOINT if args.family == "ssgan" else f"pretrained/{CHECKPOINT_NAME}")
        if not wanted.is_file():
            raise FileNotFoundError(f"--resume {args.resume}: no {wanted.relative_to(args.out)} to resume from "
                                    f"(expected the folder of an earlier 'genaug pretrain {args.family}' run)")
    else:
        args.out = args.out or "runs/pretrain"
        _run_folder_free("--out", args.out, args.overwrite)
    data, test, data_name = _splits(args, args.download)
    x, y = as_tensors(data)
    out = Path(args.out)
    if args.family == "ssgan":
        return _pretrain_ssgan(args, x, y, data_name, test)
    if args.backbone:
        folder = Path(args.backbone)
    else:
        # Pretrain on every image; the labels are not used by these families.
        cfg = TrainConfig(family=args.family, epochs=args.epochs, seed=args.seed,
                          progress=not args.no_progress)
        result = Trainer(cfg, (x, torch.zeros_like(y)), out_dir=out / "pretrained", data_name=data_name,
                         overwrite=args.overwrite, resume=bool(args.resume)).fit()
        folder = out / "pretrained"
        if result.interrupted:
            print(f"{args.family}: interrupted at step {result.step} (checkpoint saved, resume with --resume {out})")
            return 0
    idx = few_label_indices(y, args.labels_per_class, seed=args.seed)
    labelled = TensorDataset(x[idx].float() / 255, y[idx])
    clf = build_classifier(load_backbone(folder), int(y.max()) + 1, freeze=args.freeze)
    epochs = max(1, round(args.finetune_steps * 64 / len(labelled)))
    train_classifier(labelled, model=clf, epochs=epochs, batch_size=64, seed=args.seed,
                     progress=not args.no_progress)
    tx, ty = as_tensors(test)
    acc = accuracy(clf, TensorDataset(tx.float() / 255, ty))
    print(f"backbone {folder}: fine-tuned on {len(labelled)} labels ({args.labels_per_class} per class); "
          f"test accuracy {acc:.4f} on {len(ty)} images")
    return 0


def _pretrain_ssgan(args: argparse.Namespace, x: Any, y: Any, data_name: str, test: Any) -> int:
    """Semi-supervised GAN: its discriminator becomes the classifier (saved with save_module)."""
    from torch.utils.data import TensorDataset

    from genaug.checkpoint import save_module
    from genaug.data.sources import labelled_tensors as as_tensors
    from genaug.metrics import accuracy
    from genaug.pretrain import few_label_indices
    from genaug.train import TrainingInterrupted
    from genaug.train.recipes.ssgan import SemiSupervisedConfig, fit_semi_supervised_gan, label_with, train_student

    idx = few_label_indices(y, args.labels_per_class, seed=args.seed)
    cfg = SemiSupervisedConfig(epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    checkpoint = Path(args.out) / SSGAN_CHECKPOINT
    if args.overwrite:  # an earlier run's GAN is not this one's
        checkpoint.unlink(missing_ok=True)
    try:
        model = fit_semi_supervised_gan(x, y, idx, config=cfg, checkpoint=checkpoint)
    except TrainingInterrupted as err:
        print(f"semi-supervised GAN: interrupted at step {err.step} of {err.total} (checkpoint saved, resume with "
              f"--resume {args.out})")
        return 0
    tx, ty = as_tensors(test)
    test_set = TensorDataset(tx.float() / 255, ty)
    acc = accuracy(model.discriminator, test_set)
    provenance = {"training_data": data_name, "labels": len(idx), "labelled_indices": idx.tolist(),
                  "train_config": cfg.to_dict(), "command": _command_line()}
    folder = save_module(model.discriminator.cpu(), "ssgan", model.config, Path(args.out) / "classifier",
                         part="discriminator", provenance={**provenance, "test_accuracy": acc})
    print(f"semi-supervised GAN: {len(idx)} labels ({args.labels_per_class} per class) and {len(y)} images; "
          f"test accuracy {acc:.4f} on {len(ty)} images; classifier saved to {folder}")
    if args.student_steps:
        # A fresh augmented CNN on the GAN's labels of every image (the labelled ones keep theirs).
        pseudo = label_with(model.discriminator, x, y, idx)
        student = train_student(x, pseudo, steps=args.student_steps, rounds=args.student_rounds, seed=args.seed,
                                progress=not args.no_progress).cpu()
        student_acc = accuracy(student, test_set)
        folder = save_module(student, "classifier", student.config, Path(args.out) / "student",
                             provenance={**provenance, "labeller": "ssgan", "student_steps": args.student_steps,
                                         "student_rounds": args.student_rounds, "test_accuracy": student_acc})
        rounds = f", round {args.student_rounds} of self-training" if args.student_rounds > 1 else ""
        print(f"student CNN on the GAN's labels of all {len(y)} images ({args.student_steps} steps of 128{rounds}): "
              f"test accuracy {student_acc:.4f}; saved to {folder}")
    return 0


def _splits(args: argparse.Namespace, download: bool = False) -> tuple[Any, Any, str]:
    """(train, test, description) of ``--data`` with ``--test-data`` or ``--val-split``."""
    from genaug.data.sources import resolve_splits

    return resolve_splits(args.data, args.data_root, test=args.test_data, val_split=args.val_split,
                          seed=args.seed, download=download, **_data_options(args))


def _judge(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import TensorDataset

    from genaug.checkpoint import save_module
    from genaug.data.labelled import dataset_classes
    from genaug.data.sources import labelled_tensors as as_tensors
    from genaug.metrics import accuracy, train_classifier
    from genaug.models.classifier import Classifier, ClassifierConfig

    _run_folder_free("--out", args.out, args.overwrite)
    data, test, data_name = _splits(args, args.download)
    x, y = as_tensors(data)
    tx, ty = as_tensors(test)
    sizes = {k: v for k, v in (("width", args.width), ("hidden", args.hidden)) if v is not None}
    model = None
    if sizes:
        torch.manual_seed(args.seed)
        model = Classifier(ClassifierConfig(image_shape=tuple(x.shape[1:]), num_classes=int(y.max()) + 1, **sizes))
    judge = train_classifier(TensorDataset(x.float() / 255, y), model=model, num_classes=int(y.max()) + 1,
                             image_shape=tuple(x.shape[1:]), epochs=args.epochs, seed=args.seed,
                             device=args.device, progress=not args.no_progress)
    acc = accuracy(judge, TensorDataset(tx.float() / 255, ty))
    classes = dataset_classes(data)
    save_module(judge.cpu(), "classifier", judge.config, args.out,
                provenance={"training_data": data_name, "epochs": args.epochs, "test_accuracy": acc,
                            "command": _command_line(),
                            **({"classes": list(classes)} if classes is not None else {})})
    print(f"judge saved to {args.out}: test accuracy {acc:.4f}")
    return 0


def _prior(args: argparse.Namespace) -> int:
    import time

    from genaug.data.labelled import dataset_classes
    from genaug.data.sources import labelled_tensors as as_tensors
    from genaug.device import get_device
    from genaug.generators import VAEGenerator
    from genaug.generators.prior import fit_latent_prior
    from genaug.generators.wrappers import same_classes
    from genaug.hub import load_generator

    _run_folder_free("--out", args.out, args.overwrite)
    _check_generator_name(args.generator)
    gen = load_generator(args.generator, device=get_device(args.device))
    if not isinstance(gen, VAEGenerator) or not gen.num_classes:
        kind = f"an unconditional {gen.family!r}" if isinstance(gen, VAEGenerator) else f"a {gen.family!r}"
        raise ValueError(f"--generator {args.generator}: expected a conditional VAE (a cvae or cvae-wide run, "
                         f"or mnist-cvae), got {kind} generator")
    if args.val_split is not None:
        data, _, data_name = _splits(args, args.download)
    else:
        data, data_name = _load_data(args)
    classes = dataset_classes(data)
    if classes is not None and not same_classes(classes, gen.classes):
        raise ValueError(f"--data {args.data} has classes {list(classes)} but --generator {args.generator} "
                         f"has {list(gen.classes)}; the prior is fitted under the generator's own labels")
    x, y = as_tensors(data)
    if tuple(x.shape[1:]) != tuple(gen.image_shape):
        raise ValueError(f"--data {args.data} holds {tuple(x.shape[1:])} images but --generator {args.generator} "
                         f"makes {tuple(gen.image_shape)}; use --resize / --mode to match")
    start = time.perf_counter()
    prior = fit_latent_prior(gen, x.float() / 255, y, components=args.components, iterations=args.iterations,
                             seed=args.seed)
    seconds = time.perf_counter() - start
    prior.save_pretrained(args.out, provenance={
        "command": _command_line(), "base": str(args.generator), "base_provenance": dict(gen.provenance),
        "latent_prior": {"components": args.components, "iterations": args.iterations, "seed": args.seed,
                         "fitted_on": data_name, "seconds": round(seconds, 1)}})
    print(f"fitted {args.components} components per class on {len(x)} images in {seconds:.1f} s; "
          f"saved {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from genaug.checkpoint import load_module
    from genaug.data.labelled import dataset_classes
    from genaug.data.sources import labelled_tensors as as_tensors
    from genaug.device import get_device
    from genaug.generators.base import sampling_amp
    from genaug.generators.wrappers import match_classes, same_classes
    from genaug.metrics import evaluate
    from genaug.registry import resolve_model_path

    if args.json:
        check_output_path(args.json, name="--json", overwrite=args.overwrite, overwrite_hint="--overwrite")
    judge_path = resolve_model_path(args.judge)
    _existing("--judge", str(judge_path))
    device = get_device(args.device)
    gen = _open_generator(args, device)
    judge, card = load_module(judge_path)
    if card.get("family") != "classifier":
        raise ValueError(f"--judge {args.judge}: expected a classifier written by 'genaug judge train', "
                         f"got a {card.get('family')!r} {card.get('part')!r}")
    judge = judge.to(device)
    data, test, _ = _splits(args)
    classes = dataset_classes(data)
    # Synthetic label i must mean the data's class i, and so must the judge's output i. An
    # unconditional generator has no labels of its own: the judge labels its samples.
    if gen.num_classes:
        gen = match_classes(gen, classes, name=f"--data {args.data}")
    judge_classes = card.get("provenance", {}).get("classes")
    if classes is not None and judge_classes is not None and not same_classes(judge_classes, classes):
        raise ValueError(f"--judge {args.judge} was trained on classes {judge_classes}, but --data {args.data} "
                         f"has {list(classes)}; train a judge on this data (genaug judge train --data ...)")
    x, y = as_tensors(data)
    tx, ty = as_tensors(test)
    report = evaluate(gen, judge, (x.float() / 255, y), (tx.float() / 255, ty),
                      per_class=args.per_class, seed=args.seed, tstr_epochs=args.tstr_epochs,
                      truncation=args.truncation)
    report = {"generator": _generator_name(args), "amp": sampling_amp(gen), **report}
    if args.json:
        text = json.dumps(report, indent=2) + "\n"
        atomic_write(Path(args.json), lambda tmp: tmp.write_text(text))
    for key, value in report.items():
        print(f"{key:<24}{value:.4f}" if isinstance(value, float) else f"{key:<24}{value}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from genaug.registry import list_families, list_generators

    print("generators:", ", ".join(list_generators()) or "(none registered)")
    print("generator families:", ", ".join(list_families()))
    print("training families:", ", ".join(list_training_families()))
    return 0


def _size(text: str) -> tuple[int, int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected H or H,W (positive integers), got {text!r}")
    return (values[0], values[-1])


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if len(names) < 2 or not all(names):
        raise argparse.ArgumentTypeError(f"expected two or more comma-separated class names, got {text!r}")
    return names


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resize", type=_size, metavar="H[,W]", help="resize every image to H x W (H x H)")
    p.add_argument("--mode", choices=("L", "RGB"), help="convert every image to grayscale (L) or RGB")
    p.add_argument("--classes", type=_names, help="comma-separated class names, in label order")
    p.add_argument("--skip-bad-files", action="store_true",
                   help="leave unreadable files of a folder out (listed in the card) instead of stopping")


def build_parser() -> argparse.ArgumentParser:
    from genaug._version import __version__

    parser = _Parser(prog="genaug", description="Generative data augmentation for PyTorch.")
    parser.add_argument("--version", action="version", version=f"genaug {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mix_help = "comma-separated shares of the generators given (default: equal)"
    gen_many = "registered name or saved folder; give it more than once to sample a mixture"
    device_help = "auto, cpu, cuda, cuda:N or mps"
    amp_help = ("sample under bf16 autocast: 'bf16' on any device (1.3-2.4x faster for the bundled generators on "
                "a CPU with AVX512-BF16; the images differ slightly), 'auto' on a CUDA GPU with bf16 (default: off)")

    p = sub.add_parser("train", help="train a generator (or autoencoder) family",
                       description="Train a family on labelled images; see 'genaug list'.")
    p.add_argument("family", nargs="?", choices=list_training_families(), metavar="FAMILY",
                   help=f"one of: {', '.join(list_training_families())} (with --resume: the run's own)")
    p.add_argument("--data", help=DATA_HELP + " (default: sample; with --resume: the run's own data)")
    p.add_argument("--data-root", help="folder holding MNIST/raw (default: $GENAUG_DATA)")
    _data_flags(p)
    p.add_argument("--download", action="store_true", help="download MNIST if missing")
    p.add_argument("--epochs", type=COUNT)
    p.add_argument("--batch-size", type=COUNT)
    p.add_argument("--max-steps", type=COUNT)
    p.add_argument("--seed", type=SEED)
    p.add_argument("--device", type=_device, help=device_help)
    p.add_argument("--out", help="output folder (default: runs/train); refused if it holds a run")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--config", help="JSON file of TrainConfig fields")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override one config field")
    p.add_argument("--resume", metavar="DIR", help="resume the run in DIR from its checkpoint")
    p.add_argument("--labels-per-class", type=COUNT, metavar="K",
                   help="use K labels per class (drawn by --seed, recorded in the card) and the other images "
                        "without labels: a semi-supervised GAN labels them first (conditional families)")
    p.add_argument("--labeller-epochs", type=COUNT, help="epochs of that semi-supervised GAN (default 10)")
    p.add_argument("--labeller-student-steps", type=_int_at_least(0), metavar="N",
                   help="then train a CNN for N steps of 128 on the GAN's labels and relabel with it (default 0: off)")
    p.add_argument("--labeller-student-rounds", type=COUNT, metavar="R",
                   help="with --labeller-student-steps: R CNNs in turn, each on the labels of the one before "
                        "(default 1)")
    p.add_argument("--min-confidence", type=_float_in(0.0, 1.0),
                   help="with --labels-per-class: leave out images the labeller is less sure of (default 0)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("sample", help="write a PNG grid of samples, one row per class")
    p.add_argument("--generator", required=True, action="append", help=gen_many)
    p.add_argument("--mix-weights", help=mix_help)
    p.add_argument("--out", required=True, help="image path (.png, .jpg, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--per-class", type=COUNT, default=8)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--truncation", type=TRUNCATION, default=1.0)
    p.add_argument("--amp", choices=AMP_MODES, default="off", help=amp_help)
    p.add_argument("--device", type=_device, default="auto", help=device_help)
    p.set_defaults(func=_sample)

    p = sub.add_parser("export", help="write a labelled synthetic dataset to HDF5")
    p.add_argument("--generator", required=True, action="append", help=gen_many)
    p.add_argument("--mix-weights", help=mix_help)
    p.add_argument("--out", required=True, help="output .h5 file")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--per-class", type=COUNT)
    # Not "--n": under torchrun it would be taken as an abbreviation of torchrun's own --nnodes etc.
    size.add_argument("--num-samples", "--n", dest="n", type=COUNT, metavar="N",
                      help="N samples in all (drawn by --class-weights)")
    p.add_argument("--class-weights", help="comma-separated weights, with --num-samples")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--batch-size", type=COUNT, default=512)
    p.add_argument("--truncation", type=TRUNCATION, default=1.0)
    p.add_argument("--compression", choices=("lzf", "gzip", "none"), default="lzf")
    p.add_argument("--chunk-size", type=COUNT)
    p.add_argument("--with-latents", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue an interrupted export of the same settings")
    p.add_argument("--min-confidence", type=_float_in(0.0, 1.0),
                   help="keep samples the judge gives their class at least this")
    p.add_argument("--judge", help="classifier folder (safetensors + JSON) for --min-confidence")
    p.add_argument("--distributed", action="store_true",
                   help="under torchrun: one shard file per rank plus a master file of virtual datasets")
    p.add_argument("--device", type=_device, default="auto", help=device_help)
    p.add_argument("--amp", choices=AMP_MODES, default="off", help=amp_help)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "pretrain", help="pretrain an encoder on unlabelled images, fine-tune on few labels",
        description="Pretrain FAMILY (autoencoder, vae, dcgan, ...) on the images without labels, then "
                    "fine-tune a classifier from its encoder or discriminator on K labels per class.")
    conditional = ("cvae", "cgan", "cdcgan", "cwgan-gp")
    p.add_argument("family", choices=[*(f for f in list_training_families() if f not in conditional), "ssgan"],
                   metavar="FAMILY", help="a family to pretrain, or 'ssgan': a semi-supervised GAN whose "
                                          "discriminator is the classifier (trained with the labels)")
    p.add_argument("--data", default="sample", help=DATA_HELP)
    p.add_argument("--test-data", help="the test set, in any --data form (default: the data's own test split)")
    p.add_argument("--val-split", type=FRACTION, help="instead, hold out this fraction of --data (seeded)")
    p.add_argument("--data-root", help="folder holding MNIST/raw or a torchvision dataset's files")
    _data_flags(p)
    p.add_argument("--download", action="store_true")
    p.add_argument("--epochs", type=COUNT, default=1, help="pretraining epochs")
    p.add_argument("--backbone", help="use this training output folder instead of pretraining")
    p.add_argument("--labels-per-class", type=COUNT, default=10)
    p.add_argument("--finetune-steps", type=COUNT, default=300)
    p.add_argument("--student-steps", type=_int_at_least(0), default=0,
                   help="ssgan only: then train a fresh CNN (random affine augmentation) for this many steps of "
                        "128 on the GAN's labels of every image and save it to OUT/student (default 0: off)")
    p.add_argument("--student-rounds", type=COUNT, default=1,
                   help="with --student-steps: R CNNs in turn, each on the labels of the one before "
                        "(self-training); the last is saved (default 1)")
    p.add_argument("--freeze", default="none", type=_freeze, help="'none', 'all' or N (first N backbone layers)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", help="output folder (default: runs/pretrain)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier output in --out")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR (stopped by SIGTERM "
                                                   "or killed; it continues from its last checkpoint)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("judge", help="train the judge classifier used by evaluate and quality gates")
    p.add_argument("action", choices=["train"])
    p.add_argument("--data", default="mnist", help=DATA_HELP)
    p.add_argument("--test-data", help="the test set, in any --data form (default: the data's own test split)")
    p.add_argument("--val-split", type=FRACTION, help="instead, hold out this fraction of --data (seeded)")
    p.add_argument("--data-root", help="folder holding MNIST/raw or a torchvision dataset's files")
    _data_flags(p)
    p.add_argument("--download", action="store_true")
    p.add_argument("--epochs", type=COUNT, default=5)
    p.add_argument("--width", type=COUNT, help="channels of the first convolution (default 32, doubling per stage)")
    p.add_argument("--hidden", type=COUNT, help="width of the dense feature layer (default 128)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", type=_device, default="auto", help=device_help)
    p.add_argument("--out", default="runs/judge")
    p.add_argument("--overwrite", action="store_true", help="replace a judge already in --out")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_judge)

    p = sub.add_parser(
        "prior", help="fit a per-class Gaussian mixture prior to a cVAE's latent space",
        description="Ex-post density estimation (Ghosh et al., 2020): fit a full-covariance Gaussian mixture per "
                    "class to a conditional VAE's encoder means of --data, and save a generator that samples "
                    "the VAE's decoder from it instead of N(0, I).")
    p.add_argument("action", choices=["fit"])
    p.add_argument("--generator", required=True, help="a conditional VAE: registered name or saved folder")
    p.add_argument("--data", default="mnist", help=DATA_HELP + " (the generator's training images)")
    p.add_argument("--val-split", type=FRACTION,
                   help="fit on the rest of --data after holding out this fraction, as evaluate --val-split does")
    p.add_argument("--data-root", help="folder holding MNIST/raw or a torchvision dataset's files")
    _data_flags(p)
    p.add_argument("--download", action="store_true")
    p.add_argument("--components", type=COUNT, default=10, help="mixture components per class (default 10)")
    p.add_argument("--iterations", type=COUNT, default=100, help="EM iterations per class (default 100)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", type=_device, default="auto", help=device_help)
    p.add_argument("--out", required=True, help="output folder for the generator with its prior")
    p.add_argument("--overwrite", action="store_true", help="replace earlier output in --out")
    p.set_defaults(func=_prior, test_data=None)

    p = sub.add_parser("evaluate", help="judge-FID, KID, precision/recall, label fidelity, coverage, TSTR")
    p.add_argument("--generator", required=True, action="append", help=gen_many)
    p.add_argument("--mix-weights", help=mix_help)
    p.add_argument("--judge", default="mnist-judge",
                   help="folder written by 'genaug judge train' (default: the bundled MNIST judge)")
    p.add_argument("--data", default="mnist", help=DATA_HELP)
    p.add_argument("--test-data", help="the test set, in any --data form (default: the data's own test split)")
    p.add_argument("--val-split", type=FRACTION, help="instead, hold out this fraction of --data (seeded)")
    p.add_argument("--data-root", help="folder holding MNIST/raw or a torchvision dataset's files")
    _data_flags(p)
    p.add_argument("--per-class", type=COUNT, default=1000)
    p.add_argument("--tstr-epochs", type=COUNT, default=3)
    p.add_argument("--truncation", type=TRUNCATION, default=1.0, help="scale of the latent noise when sampling")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--overwrite", action="store_true", help="replace --json if it exists")
    p.add_argument("--device", type=_device, default="auto", help=device_help)
    p.add_argument("--amp", choices=AMP_MODES, default="off", help=amp_help)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("list", help="list registered generators and families")
    p.set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (2: bad arguments, 1: the run failed)."""
    from genaug.generators import SamplingError
    from genaug.train import NonFiniteLossError

    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"genaug {args.command}"
    debug = os.environ.get("GENAUG_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except (NonFiniteLossError, DiskFullError, SamplingError) as err:
        if debug:
            raise
        print(f"{prog}: error: {one_line(err.strerror if isinstance(err, OSError) else err)}", file=sys.stderr)
        return 1
    except USAGE_ERRORS as err:
        if debug:
            raise
        message = err.strerror if isinstance(err, OSError) and err.strerror and not err.filename else err
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
        return 2
    except OSError as err:  # a write that met a full disk outside genaug's own checks (a log line, a grid)
        if debug or err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"{prog}: error: {err.filename or 'an output file'}: the disk is full ({err.strerror})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
