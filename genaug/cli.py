"""Command line: ``genaug train | sample | export | list``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from genaug.train.config import TrainConfig, config_fields, list_training_families


def _command_line() -> str:
    """This invocation as a shell command, recorded in cards to reproduce a run."""
    return "genaug " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _load_data(name: str, root: str | None, download: bool) -> tuple[Any, str]:
    from genaug.data.sources import resolve_data

    return resolve_data(name, root, download=download)


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from genaug.train import Trainer

    settings: dict[str, Any] = {}
    if args.config:
        try:
            settings = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as err:
            parser.error(f"--config {args.config}: cannot read a JSON object ({err})")
        if not isinstance(settings, dict):
            parser.error(f"--config {args.config}: expected a JSON object, got {type(settings).__name__}")
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or key not in config_fields(args.family):
            parser.error(f"--set expects FIELD=VALUE with FIELD one of {config_fields(args.family)}, got {item!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    settings["family"] = args.family
    for key in ("epochs", "batch_size", "seed", "max_steps", "device"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.no_progress:
        settings["progress"] = False
    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    try:
        cfg = TrainConfig.from_dict(settings)
        if distributed:
            _init_distributed(cfg)
        data, data_name = _load_data(args.data, args.data_root, args.download)
        out = Path(args.resume or args.out)
        trainer = Trainer(cfg, data, out_dir=out, data_name=data_name,
                          resume=bool(args.resume), command=_command_line())
        result = trainer.fit()
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    finally:
        if distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    state = "interrupted (checkpoint saved, resume with --resume)" if result.interrupted else "done"
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
    if args.mix_weights is not None:
        if len(names) < 2:
            raise ValueError(f"--mix-weights needs two or more --generator, got {len(names)}")
        weights = _numbers("--mix-weights", args.mix_weights)
        if len(weights) != len(names):
            raise ValueError(f"--mix-weights expects one number per --generator ({len(names)}), got {len(weights)}")
    if len(names) == 1:
        return load_generator(names[0], device=device)
    return MixtureGenerator([load_generator(n, device=device) for n in names], weights=weights)


def _generator_name(args: argparse.Namespace) -> str:
    return " + ".join(str(n) for n in args.generator)


def _sample(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch
    from torchvision.utils import save_image

    try:
        gen = _open_generator(args, args.device)
        if gen.num_classes == 0:
            labels = torch.full((args.per_class * 8,), -1)
        else:
            labels = torch.arange(gen.num_classes).repeat_interleave(args.per_class)
        g = torch.Generator().manual_seed(args.seed)
        images = gen.sample(labels, generator=g, truncation=args.truncation)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_image(images.cpu(), args.out, nrow=args.per_class if gen.num_classes else 8)
    print(f"wrote {args.out}: {len(labels)} samples, one row per class")
    return 0


def _export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from genaug.data.hdf5 import export_hdf5, export_sharded

    try:
        weights = _numbers("--class-weights", args.class_weights) if args.class_weights else None
    except ValueError as err:
        parser.error(str(err))
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
        if not args.judge:
            raise ValueError("--min-confidence needs --judge DIR (a classifier saved with save_module)")
        from genaug.checkpoint import load_module
        from genaug.generators import FilterConfig, FilteredGenerator
        from genaug.registry import resolve_model_path

        judge, _ = load_module(resolve_model_path(args.judge))
        return FilteredGenerator(gen, judge.to(gen.device), config=FilterConfig(min_confidence=args.min_confidence))

    try:
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
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        parser.error(str(err))
    if not args.distributed or int(os.environ.get("RANK", 0)) == 0:
        print(f"wrote {path}")
    return 0


def _pretrain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch
    from torch.utils.data import TensorDataset

    from genaug.data.sources import labelled_tensors as as_tensors
    from genaug.metrics import accuracy, train_classifier
    from genaug.pretrain import build_classifier, few_label_indices, load_backbone
    from genaug.train import Trainer

    try:
        data, data_name = _load_data(args.data, args.data_root, args.download)
        x, y = as_tensors(data)
        out = Path(args.out)
        if args.family == "ssgan":
            return _pretrain_ssgan(args, x, y, data_name)
        if args.backbone:
            folder = Path(args.backbone)
        else:
            # Pretrain on every image; the labels are not used by these families.
            cfg = TrainConfig(family=args.family, epochs=args.epochs, seed=args.seed,
                              progress=not args.no_progress)
            Trainer(cfg, (x, torch.zeros_like(y)), out_dir=out / "pretrained", data_name=data_name).fit()
            folder = out / "pretrained"
        idx = few_label_indices(y, args.labels_per_class, seed=args.seed)
        labelled = TensorDataset(x[idx].float() / 255, y[idx])
        clf = build_classifier(load_backbone(folder), int(y.max()) + 1, freeze=args.freeze)
        epochs = max(1, round(args.finetune_steps * 64 / len(labelled)))
        train_classifier(labelled, model=clf, epochs=epochs, batch_size=64, seed=args.seed,
                         progress=not args.no_progress)
        test = _test_set(args)
        tx, ty = as_tensors(test)
        acc = accuracy(clf, TensorDataset(tx.float() / 255, ty))
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(f"backbone {folder}: fine-tuned on {len(labelled)} labels ({args.labels_per_class} per class); "
          f"test accuracy {acc:.4f} on {len(ty)} images")
    return 0


def _pretrain_ssgan(args: argparse.Namespace, x: Any, y: Any, data_name: str) -> int:
    """Semi-supervised GAN: its discriminator becomes the classifier (saved with save_module)."""
    from torch.utils.data import TensorDataset

    from genaug.checkpoint import save_module
    from genaug.data.sources import labelled_tensors as as_tensors
    from genaug.metrics import accuracy
    from genaug.pretrain import few_label_indices
    from genaug.train.recipes.ssgan import SemiSupervisedConfig, fit_semi_supervised_gan

    idx = few_label_indices(y, args.labels_per_class, seed=args.seed)
    cfg = SemiSupervisedConfig(epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    model = fit_semi_supervised_gan(x, y, idx, config=cfg)
    tx, ty = as_tensors(_test_set(args))
    acc = accuracy(model.discriminator, TensorDataset(tx.float() / 255, ty))
    folder = save_module(model.discriminator.cpu(), "ssgan", model.config, Path(args.out) / "classifier",
                         part="discriminator",
                         provenance={"training_data": data_name, "labels": len(idx), "train_config": cfg.to_dict(),
                                     "test_accuracy": acc, "command": _command_line()})
    print(f"semi-supervised GAN: {len(idx)} labels ({args.labels_per_class} per class) and {len(y)} images; "
          f"test accuracy {acc:.4f} on {len(ty)} images; classifier saved to {folder}")
    return 0


def _test_set(args: argparse.Namespace) -> Any:
    from genaug.data.sources import resolve_test_data

    return resolve_test_data(args.data, args.data_root)


def _judge(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from torch.utils.data import TensorDataset

    from genaug.checkpoint import save_module
    from genaug.data.sources import labelled_tensors as as_tensors
    from genaug.metrics import accuracy, train_classifier

    try:
        data, data_name = _load_data(args.data, args.data_root, args.download)
        x, y = as_tensors(data)
        tx, ty = as_tensors(_test_set(args))
        judge = train_classifier(TensorDataset(x.float() / 255, y), num_classes=int(y.max()) + 1,
                                 image_shape=tuple(x.shape[1:]), epochs=args.epochs, seed=args.seed,
                                 device=args.device, progress=not args.no_progress)
        acc = accuracy(judge, TensorDataset(tx.float() / 255, ty))
        save_module(judge.cpu(), "classifier", judge.config, args.out,
                    provenance={"training_data": data_name, "epochs": args.epochs, "test_accuracy": acc,
                                "command": _command_line()})
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    print(f"judge saved to {args.out}: test accuracy {acc:.4f}")
    return 0


def _evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from genaug.checkpoint import load_module
    from genaug.data.sources import labelled_tensors as as_tensors
    from genaug.device import get_device
    from genaug.metrics import evaluate
    from genaug.registry import resolve_model_path

    try:
        device = get_device(args.device)
        gen = _open_generator(args, device)
        judge, _ = load_module(resolve_model_path(args.judge))
        judge = judge.to(device)
        data, _ = _load_data(args.data, args.data_root, False)
        x, y = as_tensors(data)
        tx, ty = as_tensors(_test_set(args))
        report = evaluate(gen, judge, (x.float() / 255, y), (tx.float() / 255, ty),
                          per_class=args.per_class, seed=args.seed, tstr_epochs=args.tstr_epochs,
                          truncation=args.truncation)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    report = {"generator": _generator_name(args), **report}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:<24}{value:.4f}" if isinstance(value, float) else f"{key:<24}{value}")
    return 0


def _list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from genaug.registry import list_families, list_generators

    print("generators:", ", ".join(list_generators()) or "(none registered)")
    print("generator families:", ", ".join(list_families()))
    print("training families:", ", ".join(list_training_families()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from genaug._version import __version__

    parser = argparse.ArgumentParser(prog="genaug", description="Generative data augmentation for PyTorch.")
    parser.add_argument("--version", action="version", version=f"genaug {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mix_help = "comma-separated shares of the generators given (default: equal)"
    gen_many = "registered name or saved folder; give it more than once to sample a mixture"

    p = sub.add_parser("train", help="train a generator (or autoencoder) family",
                       description="Train a family on labelled images; see 'genaug list'.")
    p.add_argument("family", choices=list_training_families(), metavar="FAMILY",
                   help=f"one of: {', '.join(list_training_families())}")
    p.add_argument("--data", default="sample", help="'mnist', 'sample' (bundled) or a genaug .h5 file")
    p.add_argument("--data-root", help="folder holding MNIST/raw (default: $GENAUG_DATA)")
    p.add_argument("--download", action="store_true", help="download MNIST if missing")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", default="runs/train", help="output folder")
    p.add_argument("--config", help="JSON file of TrainConfig fields")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override one config field")
    p.add_argument("--resume", metavar="DIR", help="resume the run in DIR from its checkpoint")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("sample", help="write a PNG grid of samples, one row per class")
    p.add_argument("--generator", required=True, action="append", help=gen_many)
    p.add_argument("--mix-weights", help=mix_help)
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--per-class", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_sample)

    p = sub.add_parser("export", help="write a labelled synthetic dataset to HDF5")
    p.add_argument("--generator", required=True, action="append", help=gen_many)
    p.add_argument("--mix-weights", help=mix_help)
    p.add_argument("--out", required=True, help="output .h5 file")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--per-class", type=int)
    size.add_argument("--n", type=int)
    p.add_argument("--class-weights", help="comma-separated weights, with --n")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--truncation", type=float, default=1.0)
    p.add_argument("--compression", choices=("lzf", "gzip", "none"), default="lzf")
    p.add_argument("--chunk-size", type=int)
    p.add_argument("--with-latents", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--resume", action="store_true", help="continue an interrupted export of the same settings")
    p.add_argument("--min-confidence", type=float, help="keep samples the judge gives their class at least this")
    p.add_argument("--judge", help="classifier folder (safetensors + JSON) for --min-confidence")
    p.add_argument("--distributed", action="store_true",
                   help="under torchrun: one shard file per rank plus a master file of virtual datasets")
    p.add_argument("--device", default="auto")
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
    p.add_argument("--data", default="sample", help="'mnist' or 'sample' (bundled)")
    p.add_argument("--data-root")
    p.add_argument("--download", action="store_true")
    p.add_argument("--epochs", type=int, default=1, help="pretraining epochs")
    p.add_argument("--backbone", help="use this training output folder instead of pretraining")
    p.add_argument("--labels-per-class", type=int, default=10)
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--freeze", default="none", type=lambda v: int(v) if v.isdigit() else v,
                   help="'none', 'all' or N (first N backbone layers)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/pretrain")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("judge", help="train the judge classifier used by evaluate and quality gates")
    p.add_argument("action", choices=["train"])
    p.add_argument("--data", default="mnist", help="'mnist' or 'sample' (bundled)")
    p.add_argument("--data-root")
    p.add_argument("--download", action="store_true")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", default="runs/judge")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_judge)

    p = sub.add_parser("evaluate", help="judge-FID, KID, precision/recall, label fidelity, coverage, TSTR")
    p.add_argument("--generator", required=True, action="append", help=gen_many)
    p.add_argument("--mix-weights", help=mix_help)
    p.add_argument("--judge", default="mnist-judge",
                   help="folder written by 'genaug judge train' (default: the bundled MNIST judge)")
    p.add_argument("--data", default="mnist", help="'mnist' or 'sample' (bundled)")
    p.add_argument("--data-root")
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--tstr-epochs", type=int, default=3)
    p.add_argument("--truncation", type=float, default=1.0, help="scale of the latent noise when sampling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("list", help="list registered generators and families")
    p.set_defaults(func=_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args, parser)


if __name__ == "__main__":
    sys.exit(main())
