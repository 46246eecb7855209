"""Classifiers from few labels: random init against pretrained backbones, with and without
synthetic mixing from a conditional VAE that sees only the allowed labels.

Backbones are pretrained on unlabelled MNIST training images (labels unused) with
``genaug train autoencoder|vae|dcgan --data mnist --out RUNS/<family>``; the default
RUNS layout is RUNS/autoencoder, RUNS/vae, RUNS/dcgan. For each seed, K labelled images
per class are drawn; the conditional VAE for mixing is trained on those images only.
Every classifier is fine-tuned for the same number of steps and tested on the 10,000
MNIST test images. The semi-supervised GAN (Salimans et al., 2016) learns its
discriminator-classifier from the K labelled images per class and all training images
without labels. "ssgan labels -> CNN" trains the augmented CNN of ``augmentation.py`` from
scratch on every training image with that GAN's labels (``genaug.train.recipes.ssgan.train_student``;
the labelled images keep their own; ``--student-min-confidence`` leaves out the less certain
ones): a CNN with augmentation can correct part of a weaker labeller's mistakes.
``--consistency-steps N`` then fine-tunes the last student with FixMatch's consistency loss
(``train_consistency``: the labelled images, plus every image labelled by the CNN itself where it
is confident, learned on a strongly augmented view). Mean and std over seeds are printed.

    python benchmarks/few_labels.py --runs RUNS --data-root DIR
    # seeds in parallel processes, then one table:
    python benchmarks/few_labels.py ... --first-seed 1 --seeds 1 --json s1.json
    python benchmarks/few_labels.py --merge s*.json
    # long semi-supervised GAN runs in stages: stopped by timeout (SIGTERM), they continue
    # exactly where they stopped when the same command runs again
    timeout 60m python benchmarks/few_labels.py ... --ssgan-epochs 60 --ssgan-checkpoints runs/ssgan
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, TensorDataset

import genaug
from genaug.data import SyntheticDataset, as_tensors, load_mnist
from genaug.metrics import accuracy, train_classifier
from genaug.pretrain import build_classifier, few_label_indices, load_backbone, random_backbone_like
from genaug.train import TrainConfig, Trainer, TrainingInterrupted
from genaug.train.recipes.ssgan import (
    SemiSupervisedConfig,
    fit_semi_supervised_gan,
    label_with,
    train_consistency,
    train_student,
)

BACKBONE_RECIPES = {"random init": "autoencoder", "autoencoder": "autoencoder", "vae": "vae",
                    "dcgan discriminator": "dcgan"}
STUDENT = "ssgan labels -> CNN"
CONSISTENCY = "ssgan labels -> CNN -> consistency"
ALL_RECIPES = [*BACKBONE_RECIPES, "semi-supervised gan", STUDENT]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", help="folder with autoencoder/, vae/ and dcgan/ training outputs")
    ap.add_argument("--data-root")
    ap.add_argument("--labels", type=int, nargs="+", default=[10, 100], help="labels per class")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--recipes", nargs="+", default=ALL_RECIPES, choices=ALL_RECIPES)
    ap.add_argument("--steps", type=int, default=400, help="fine-tuning steps (batch 64)")
    ap.add_argument("--synthetic", type=int, default=2000, help="synthetic images per class when mixing")
    ap.add_argument("--cvae-steps", type=int, default=1500)
    ap.add_argument("--ssgan-epochs", type=int, default=20, help="epochs of the semi-supervised GAN")
    ap.add_argument("--ssgan-init-images", type=int, default=SemiSupervisedConfig.init_images,
                    help="its data-dependent initialisation (0: PyTorch's default init)")
    ap.add_argument("--ssgan-ema-decay", type=float, default=SemiSupervisedConfig.ema_decay,
                    help="its discriminator's weight averaging (0: the last weights)")
    ap.add_argument("--ssgan-checkpoints", metavar="DIR",
                    help="checkpoint each semi-supervised GAN in DIR; a run stopped by SIGTERM (e.g. "
                         "timeout) or killed continues from there when the same command runs again")
    ap.add_argument("--student-steps", type=int, default=3000,
                    help=f"'{STUDENT}': steps of 128 of the augmented CNN trained on every image with the "
                         "semi-supervised GAN's labels (the labelled images keep theirs)")
    ap.add_argument("--student-rounds", type=int, default=1,
                    help=f"'{STUDENT}': R > 1 trains R CNNs in turn, each on the labels of the one before "
                         "(self-training); a row per round")
    ap.add_argument("--consistency-steps", type=int, default=0, metavar="N",
                    help=f"after the last round of '{STUDENT}', N steps of FixMatch consistency training "
                         "(train_consistency) starting from that CNN; a row of its own (default 0: off)")
    ap.add_argument("--consistency-threshold", type=float, default=0.95,
                    help="with --consistency-steps: the probability that makes a prediction a label")
    ap.add_argument("--consistency-lr", type=float, default=3e-4, help="with --consistency-steps: Adam's lr")
    ap.add_argument("--consistency-align", action="store_true",
                    help="with --consistency-steps: distribution alignment of the CNN's own labels")
    ap.add_argument("--consistency-supervised", choices=["labels", "pseudo"], default="labels",
                    help="with --consistency-steps: the supervised part, the K labelled images per class "
                         "(FixMatch) or every image with the last student's labels")
    ap.add_argument("--student-min-confidence", type=float, default=0.0,
                    help="leave out images that the GAN labels with a lower probability than this")
    ap.add_argument("--validation", type=int, default=0, metavar="N",
                    help="score on N training images held out from everything (drawn by a fixed seed) "
                         "instead of the test set: for choosing settings")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", help="write the accuracies here (for --merge)")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="print the table of earlier --json outputs")
    args = ap.parse_args()
    if args.merge:
        results: dict[str, list[float]] = {}
        meta: dict = {}  # settings as recorded by the runs that used them
        for path in args.merge:
            saved = json.loads(Path(path).read_text())
            for key, accs in saved["results"].items():
                results.setdefault(key, []).extend(accs)
            ran_ssgan = any(key.startswith("semi-supervised") for key in saved["results"])
            ran_backbones = any(not key.startswith("semi-supervised") for key in saved["results"])
            for key, value in saved["settings"].items():
                if key == "validation" or (ran_ssgan if key.startswith("ssgan") else ran_backbones):
                    meta.setdefault(key, value)
        print_table(results, meta)
        return
    if not args.data_root:
        ap.error("--data-root is required (unless --merge)")
    if args.consistency_steps and STUDENT not in args.recipes:
        ap.error(f"--consistency-steps fine-tunes the student CNN: add '{STUDENT}' to --recipes")
    results = run(args)
    settings = {k: getattr(args, k) for k in ("labels", "steps", "synthetic", "cvae_steps", "ssgan_epochs",
                                              "ssgan_init_images", "ssgan_ema_decay", "student_steps",
                                              "student_min_confidence", "student_rounds", "consistency_steps",
                                              "consistency_threshold", "consistency_lr", "consistency_align",
                                              "consistency_supervised", "validation")}
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, "results": results}, indent=1) + "\n")
    print_table(results, settings)


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    torch.manual_seed(0)
    x, y = as_tensors(load_mnist(args.data_root))
    if args.validation:
        # Held out from the labelled draws and the unlabelled images alike; the test set is not read.
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(12345))
        held, rest = perm[: args.validation], perm[args.validation :]
        tx, ty, x, y = x[held], y[held], x[rest], y[rest]
    else:
        tx, ty = as_tensors(load_mnist(args.data_root, train=False))
    test = TensorDataset(tx.float() / 255, ty)
    wanted = [r for r in args.recipes if r in BACKBONE_RECIPES]
    if wanted and not args.runs:
        raise SystemExit(f"--runs is needed for the recipes {wanted}")
    loaded = {name: load_backbone(f"{args.runs}/{name}") for name in {BACKBONE_RECIPES[r] for r in wanted}}
    recipes = {r: random_backbone_like(loaded["autoencoder"]) if r == "random init" else loaded[BACKBONE_RECIPES[r]]
               for r in wanted}
    results: dict[str, list[float]] = {}
    start = time.time()
    for k in args.labels:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            idx = few_label_indices(y, k, seed=1000 + seed)
            labelled = TensorDataset(x[idx].float() / 255, y[idx])
            if {"semi-supervised gan", STUDENT} & set(args.recipes):
                # Every training image without its label, plus the K labelled ones per class.
                cfg = SemiSupervisedConfig(epochs=args.ssgan_epochs, init_images=args.ssgan_init_images,
                                           ema_decay=args.ssgan_ema_decay, seed=seed, device=args.device,
                                           progress=False)
                checkpoint = None
                if args.ssgan_checkpoints:
                    tag = f"val{args.validation}-" if args.validation else ""
                    checkpoint = Path(args.ssgan_checkpoints) / (
                        f"ssgan-{tag}{k}perclass-seed{seed}-{args.ssgan_epochs}ep-init{args.ssgan_init_images}"
                        f"-ema{args.ssgan_ema_decay}.pt")
                try:
                    model = fit_semi_supervised_gan(x, y, idx, config=cfg, checkpoint=checkpoint)
                except TrainingInterrupted as err:
                    raise SystemExit(f"{err}; run the same command again to continue") from None
                results.setdefault(f"semi-supervised gan|{k}|0", []).append(accuracy(model.discriminator, test))
                if STUDENT in args.recipes:
                    # The augmented CNN of benchmarks/augmentation.py, on the GAN's labels of every image.
                    pseudo = label_with(model.discriminator, x, y, idx)
                    for r in range(1, args.student_rounds + 1):
                        student = train_student(x, pseudo, steps=args.student_steps,
                                                min_confidence=args.student_min_confidence, seed=seed,
                                                device=args.device)
                        name = STUDENT if r == 1 else f"{STUDENT} (round {r})"
                        results.setdefault(f"{name}|{k}|0", []).append(accuracy(student, test))
                        pseudo = label_with(student, x, y, idx)  # the next round's labels
                    if args.consistency_steps:
                        # pseudo: the last student's labels of every image are the supervised part.
                        sup, sup_idx = ((pseudo.labels, torch.arange(len(x))) if args.consistency_supervised == "pseudo"
                                        else (y, idx))
                        tuned = train_consistency(student, x, sup, sup_idx, steps=args.consistency_steps,
                                                  threshold=args.consistency_threshold, lr=args.consistency_lr,
                                                  align=args.consistency_align, seed=seed, device=args.device)
                        results.setdefault(f"{CONSISTENCY}|{k}|0", []).append(accuracy(tuned, test))
            if recipes:
                synthetic = _cvae_samples(x, y, idx, seed, args)
            for name, backbone in recipes.items():
                for mix in (False, True):
                    data = ConcatDataset([labelled, synthetic]) if mix else labelled
                    # Repeat the small labelled set so every recipe gets the same number of steps.
                    epochs = max(1, round(args.steps * 64 / len(data)))
                    torch.manual_seed(seed)
                    clf = build_classifier(_copy(backbone), 10, freeze="none")
                    train_classifier(data, model=clf, epochs=epochs, batch_size=64, seed=seed, device=args.device)
                    results.setdefault(f"{name}|{k}|{int(mix)}", []).append(accuracy(clf, test))
            print(f"  done {k} labels/class, seed {seed} ({time.time() - start:.0f} s)", flush=True)
    return results


def _cvae_samples(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, seed: int,
                  args: argparse.Namespace) -> SyntheticDataset:
    """A conditional VAE trained on the labelled images only, as a synthetic dataset."""
    with tempfile.TemporaryDirectory() as out:
        # Tile the few images so the whole run is one epoch (no per-epoch grids and files).
        reps = -(-args.cvae_steps * 64 // len(idx))
        cfg = TrainConfig(family="cvae", epochs=1, max_steps=args.cvae_steps, batch_size=64,
                          progress=False, seed=seed, tensorboard="off", device=args.device)
        Trainer(cfg, (x[idx].repeat(reps, 1, 1, 1), y[idx].repeat(reps)), out_dir=out).fit()
        gen = genaug.load_generator(out)
    return SyntheticDataset(gen, per_class=args.synthetic, seed=seed, target_transform=torch.tensor)


def print_table(results: dict[str, list[float]], settings: dict) -> None:
    scored = (f"accuracy on {settings['validation']} held-out training images" if settings.get("validation")
              else "MNIST test accuracy")
    print(f"\n{scored} (mean ± std over seeds); fine-tuning {settings.get('steps', '?')} steps of 64; "
          f"mixing adds {settings.get('synthetic', '?')} cVAE samples per class; semi-supervised GAN "
          f"{settings.get('ssgan_epochs', '?')} epochs (init images {settings.get('ssgan_init_images', '?')}, "
          f"EMA decay {settings.get('ssgan_ema_decay', '?')})")
    labels = sorted({int(key.split("|")[1]) for key in results})
    columns = [(k, mix) for k in labels for mix in (0, 1)]
    titles = [f"{k * 10} labels" + (" + synth." if mix else "") for k, mix in columns]
    print(f"{'recipe':<32}" + "".join(f"{t:>24}" for t in titles))
    rounds = sorted({key.split("|")[0] for key in results} - set(ALL_RECIPES))
    for name in [*ALL_RECIPES, *rounds]:
        cells = []
        for k, mix in columns:
            r = results.get(f"{name}|{k}|{mix}")
            if not r:
                cells.append("—")
                continue
            sd = statistics.stdev(r) if len(r) > 1 else 0.0
            cells.append(f"{statistics.mean(r) * 100:.2f} ± {sd * 100:.2f} (n={len(r)})")
        if any(c != "—" for c in cells):
            print(f"{name:<32}" + "".join(f"{c:>24}" for c in cells))


def _copy(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module)


if __name__ == "__main__":
    main()
