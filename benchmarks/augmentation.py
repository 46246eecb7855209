"""When does synthetic data help a classifier? One table: low data, imbalance, full data.

Every classifier is the same small CNN (``genaug.models.Classifier``), trained from scratch
with Adam (lr 1e-3, decayed linearly to 0) and random affine augmentation (rotation
±10°, shift ±2 px, scale 0.9-1.1) for ``--steps`` steps of 128 images; every row of a
case gets the same number of steps. It is tested on the 10,000 MNIST test images.

Rows with synthetic data mix it into every batch with ``genaug.SyntheticBatchMix``
(``mode="replace"``, ``balance="batch"``), before the augmentation, at the fraction in
the row. Cases:

- **low data**: N labelled images per class (drawn by the seed), N in ``--labels``.
  Real only, against real plus samples of a conditional VAE trained
  - on those N labelled images only ("own labels"), and the same behind a gate
    (``FilteredGenerator``: the real-only CNN of that seed must give a sample's class at
    least ``--gate``, else it is redrawn);
  - on those labels and the other training images without labels
    (``genaug train cvae --labels-per-class N``: a semi-supervised GAN labels them first), or,
    with ``--semi-generator``, a generator trained that way beforehand (e.g. a diffusion model,
    ``genaug train cddpm --labels-per-class N --seed 1000+SEED``), sampled afresh or, with
    ``--semi-bank K``, through a bank of K samples per class exported once per seed
    (``--bank-sampling sample_steps=40`` sets its sampler; ``--bank-gate P`` redraws samples that a
    CNN trained on the generator's own pseudo-labels gives their class < P);
  - the bundled ``mnist-cvae`` ("transfer: it saw all 60,000 labels"), or ``--generator``: another
    generator, or an ``.h5`` export of one (a slow diffusion model sampled once, then drawn from).
- **imbalanced**: the training set with classes 5-9 cut to 1% (drawn by the seed). Real
  only; real with class-balanced resampling; real topped up per class to the largest
  class with samples of a conditional VAE trained on that imbalanced set with
  ``sampling="balanced"`` (what ``MixedDataset(balance="uniform")`` does); class-balanced resampling
  with ``--fraction`` of each batch replaced by samples of that cVAE (resample and synthesise);
  the balanced full set as the ceiling (same steps), and the share of the gap recovered.
- **full data**: all 60,000 images, against the same plus the bundled ``mnist-cvae``, trained
  ``--full-steps`` steps (longer, so the real-only row is a strong baseline).

Generators and results are cached in ``--out`` (one JSON per row and seed), so an
interrupted run continues where it stopped and ``--stage report`` prints the table.
Nothing here reads the test set except the final accuracy. ``--validation N`` holds out N
training images (the same for every seed) and reports on them instead, never reading the test
set: the way to choose a share (``--fraction``, ``--own-fraction``) or ``--gate``. ``--rows``
runs a subset of the low-data rows. One ``--out`` folder holds one evaluation set.

    python benchmarks/augmentation.py --data-root DIR --out runs/augmentation
    python benchmarks/augmentation.py --data-root DIR --out runs/augmentation --cases low --labels 10 100
    python benchmarks/augmentation.py --out runs/augmentation --stage report
    python benchmarks/augmentation.py --data-root DIR --out runs/aug-val --validation 10000 --cases low \\
        --rows own --own-fraction 0.25
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import genaug
from genaug.checkpoint import load_module, save_module
from genaug.cli import field_values
from genaug.data import MNISTSample, as_tensors, load_mnist
from genaug.data.hdf5 import export_hdf5, weights_sha256
from genaug.generators import FilterConfig, FilteredGenerator, with_sampling
from genaug.metrics import train_augmented_classifier
from genaug.models import Classifier
from genaug.train import TrainConfig, Trainer
from genaug.train.recipes.ssgan import few_labels
from genaug.transforms import SyntheticBatchMix

CASES = ("low", "imbalanced", "full")
RARE = (5, 6, 7, 8, 9)
TOPPED_UP = "real topped up to balance with a cVAE trained on it (balanced sampling)"
RESAMPLED_MIX = "real, class-balanced resampling + the same cVAE in each batch"
LOW_ROWS = ("own", "gated", "semi", "transfer")
VALIDATION_SEED = 7777


def generator_label(name: str) -> str:
    """A row's name for ``--generator``: the name, or "FILE (stored samples)" for an export."""
    path = Path(name)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return f"{path.name} (stored samples)"
    return name


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", help="folder holding MNIST/raw")
    ap.add_argument("--out", default="runs/augmentation", help="cache of generators and results")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--labels", type=int, nargs="+", default=[10, 100, 1000], help="N labelled per class")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="run seeds first-seed .. first-seed + seeds - 1 (parallel processes may share --out)")
    ap.add_argument("--steps", type=int, default=2000, help="classifier steps of 128 images, every row")
    ap.add_argument("--full-steps", type=int, default=3000, help="classifier steps of the full-data case")
    ap.add_argument("--fraction", type=float, default=0.5, help="synthetic share of each batch (low data)")
    ap.add_argument("--gate", type=float, default=0.9,
                    help="gated rows: the real-only CNN's least probability of a synthetic image's class "
                         "(0: no gated rows)")
    ap.add_argument("--full-fraction", type=float, default=0.25, help="synthetic share of each batch (full data)")
    ap.add_argument("--generator", default="mnist-cvae",
                    help="the generator of the transfer rows: a bundled name, a folder, or an .h5 file of "
                         "samples from `genaug export` (drawn from as genaug.generators.StoredSamples)")
    ap.add_argument("--own-steps", type=int, default=2000, help="steps of the cVAE trained on N labels only")
    ap.add_argument("--semi-epochs", type=int, default=3, help="epochs of the semi-supervised cVAE")
    ap.add_argument("--semi-generator", metavar="FOLDER",
                    help="the semi-supervised row's generator, trained beforehand with `genaug train FAMILY "
                         "--labels-per-class N --seed 1000+SEED` on the MNIST training set; {seed} in the folder "
                         "name is replaced by the seed (default: train a cVAE for --semi-epochs)")
    ap.add_argument("--semi-bank", type=int, default=0, metavar="K",
                    help="with --semi-generator: export K samples per class once per seed (into --out, resumable) "
                         "and draw from them (genaug.StoredSamples); 0: sample afresh")
    ap.add_argument("--bank-sampling", action="append", default=[], metavar="FIELD=VALUE",
                    help="with --semi-bank: set a field of the generator's sampler before the export "
                         "(e.g. sample_steps=40, guidance=0.5); repeatable")
    ap.add_argument("--bank-gate", type=float, default=0.0, metavar="P",
                    help="with --semi-bank: export through a gate, a CNN trained on the generator's own "
                         "pseudo-labels, redrawing samples it gives their class < P")
    ap.add_argument("--bank-gate-steps", type=int, default=3000, help="training steps of that gate CNN")
    ap.add_argument("--bank-amp", choices=("off", "bf16"), default="off",
                    help="mixed precision of that export (bf16: faster on CPUs with bf16 instructions)")
    ap.add_argument("--labeller-epochs", type=int, default=5, help="epochs of its labelling GAN")
    ap.add_argument("--labeller-student-steps", type=int, default=0,
                    help="> 0: augmented CNNs relabel the images after the GAN, this many steps each")
    ap.add_argument("--labeller-student-rounds", type=int, default=1, help="how many such CNNs, in turn")
    ap.add_argument("--imbalanced-epochs", type=int, default=5, help="epochs of the imbalanced-set cVAE")
    ap.add_argument("--own-fraction", type=float, default=None,
                    help="synthetic share of the own-label rows (default: --fraction)")
    ap.add_argument("--rows", nargs="+", choices=LOW_ROWS, default=list(LOW_ROWS),
                    help="rows of the low-data case to run (real only is always run)")
    ap.add_argument("--validation", type=int, default=0, metavar="N",
                    help="hold out N training images (the same ones for every seed) and report accuracy on "
                         "them instead of the test set: for choosing shares and gates")
    ap.add_argument("--save-training", metavar="FILE.npz",
                    help="write this run's training images and labels (with --validation, those not held out, "
                         "in the order the run uses) to FILE.npz and stop: `genaug train --data FILE.npz "
                         "--labels-per-class N --seed 1000+SEED` then trains a --semi-generator for a "
                         "validation run")
    ap.add_argument("--stage", choices=("run", "report"), default="run")
    ap.add_argument("--tiny", action="store_true",
                    help="a seconds-long check of every row on the bundled sample (no MNIST needed)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    if args.semi_bank < 0:
        ap.error(f"--semi-bank must be >= 0 samples per class, got {args.semi_bank}")
    if args.semi_bank and not args.semi_generator:
        ap.error("--semi-bank exports samples of --semi-generator; give --semi-generator FOLDER too")
    if (args.bank_sampling or args.bank_gate) and not args.semi_bank:
        ap.error("--bank-sampling and --bank-gate shape the bank of --semi-bank K; give --semi-bank too")
    if not 0.0 <= args.bank_gate < 1.0:
        ap.error(f"--bank-gate must be a probability in [0, 1), got {args.bank_gate}")
    try:
        args.bank_sampling = field_values("--bank-sampling", args.bank_sampling)
    except ValueError as err:
        ap.error(str(err))
    out = Path(args.out)
    if args.stage == "run":
        if args.tiny:
            x, y, tx, ty = _sample()
        elif not args.data_root:
            ap.error("--data-root is required to run (or give --tiny, or --stage report)")
        else:
            x, y = as_tensors(load_mnist(args.data_root))
            tx, ty = as_tensors(load_mnist(args.data_root, train=False))
        if args.validation:  # the test set is then not used at all
            x, y, tx, ty = hold_out(x, y, args.validation)
        if args.save_training:
            save_training(Path(args.save_training), x, y)
            return {"rows": [], "text": ""}
        Runner(args, out, x, y, tx, ty).run()
    table = report(out)
    print(table["text"])
    return table


def save_training(path: Path, x: torch.Tensor, y: torch.Tensor) -> None:
    """``x`` (N, 1, H, W) uint8 and ``y`` as an .npz for ``genaug train --data``; never over a file."""
    if path.suffix != ".npz":
        raise SystemExit(f"--save-training writes an .npz file, got {path.name!r}")
    if path.exists():
        raise SystemExit(f"{path} exists; remove it or give another --save-training path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial.npz")
    np.savez(tmp, images=x[:, 0].numpy(), labels=y.numpy())
    tmp.replace(path)
    print(f"wrote {path}: {len(x)} training images")


def hold_out(x: torch.Tensor, y: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    """(train x, train y, validation x, validation y): ``n`` images drawn by a fixed seed, the
    same for every ``--seeds`` value, so that labelled subsets and generators never see them."""
    if not 0 < n < len(x):
        raise SystemExit(f"--validation must be between 1 and {len(x) - 1} (the training images), got {n}")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(VALIDATION_SEED))
    val, rest = perm[:n].sort().values, perm[n:].sort().values
    return x[rest], y[rest], x[val], y[val]


def _sample() -> tuple[torch.Tensor, ...]:
    """The bundled 1,000-image sample, split 800 / 200, for --tiny."""
    x, y = as_tensors(MNISTSample())
    return x[:800], y[:800], x[800:], y[800:]


def train_and_test(x: torch.Tensor, y: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor, *, steps: int,
                   seed: int, mix: Any = None, weights: torch.Tensor | None = None, device: str = "auto",
                   batch_size: int = 128, keep: list[Classifier] | None = None) -> float:
    """Test accuracy of the fixed CNN trained ``steps`` steps on (x, y) (+ ``mix`` per batch).

    The training is :func:`genaug.metrics.train_augmented_classifier`. ``weights``: per-image
    sampling weights (class-balanced resampling); default uniform epochs over the images.
    ``keep``: the trained model is appended to it.
    """
    model = train_augmented_classifier(x, y, steps=steps, num_classes=10, batch_size=batch_size, seed=seed,
                                       weights=weights, mix=mix, device=device)
    if keep is not None:
        keep.append(model)
    dev = next(model.parameters()).device
    with torch.no_grad():
        txf = tx.float().div(255)
        pred = torch.cat([model(txf[i : i + 1000].to(dev)).argmax(1).cpu() for i in range(0, len(txf), 1000)])
    return float((pred == ty).float().mean())


class Runner:
    """Runs every (case, row, seed) not yet in ``out/results``; generators go to ``out/gen``."""

    def __init__(self, args: argparse.Namespace, out: Path, x: torch.Tensor, y: torch.Tensor,
                 tx: torch.Tensor, ty: torch.Tensor) -> None:
        self.args, self.out, self.x, self.y, self.tx, self.ty = args, out, x, y, tx, ty
        self.tiny = args.tiny
        self.steps = 3 if self.tiny else args.steps
        self.full_steps = 3 if self.tiny else args.full_steps
        self.start = time.time()
        # The full set's size in row names (the tiny check keeps the names of the real run).
        self.total = f"{len(x):,}" if args.validation else "60,000"
        self.evaluated_on = f"validation ({len(tx)} held-out training images)" if args.validation else "test"
        (out / "results").mkdir(parents=True, exist_ok=True)
        for path in (out / "results").glob("*.json"):  # one folder, one evaluation set
            other = json.loads(path.read_text()).get("evaluated_on", "test")
            if other != self.evaluated_on:
                raise SystemExit(f"{out} holds results on {other}, this run reports on {self.evaluated_on}: "
                                 "give another --out")
            break

    def run(self) -> None:
        a = self.args
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            if "low" in a.cases:
                for n in a.labels:
                    self.low_data(n, seed)
            if "imbalanced" in a.cases:
                self.imbalanced(seed)
            if "full" in a.cases:
                self.full(seed)

    # ------------------------------------------------------------------ cases

    def low_data(self, n: int, seed: int) -> None:
        a = self.args
        n = min(n, 8) if self.tiny else n
        idx = few_labels(self.y, n, seed=1000 + seed)
        x, y = self.x[idx], self.y[idx]
        case = f"low data, {n} per class"
        own = a.fraction if a.own_fraction is None else a.own_fraction
        self.row(case, "real only", seed, lambda: self.fit(x, y, seed))
        if "own" in a.rows:
            self.row(case, "+ cVAE trained on the N labels only", seed,
                     lambda: self.fit(x, y, seed, mix=self.own_generator(n, seed, idx), fraction=own),
                     fraction=own)

        def gated() -> float:
            # The gate: the real-only CNN (same seed and steps) must give a sample's class >= --gate.
            judge: list[Classifier] = []
            self.fit(x, y, seed, keep=judge)
            gate = min(a.gate, 0.05) if self.tiny else a.gate
            gen = FilteredGenerator(self.own_generator(n, seed, idx), judge[0],
                                    config=FilterConfig(min_confidence=gate))
            return self.fit(x, y, seed, mix=gen, fraction=own)

        if a.gate > 0 and "gated" in a.rows:
            self.row(case, f"+ cVAE trained on the N labels only, gated (real-only CNN >= {a.gate})", seed, gated,
                     fraction=own)
        if "semi" in a.rows and a.semi_generator:
            given = self.given_semi_generator(n, seed, idx)
            bank = f", a stored bank of {a.semi_bank} per class{self.bank_variant(text=True)}" if a.semi_bank else ""
            self.row(case, f"+ {given.provenance.get('training_family', given.family)} semi-supervised{bank} "
                           "(N labels + unlabelled rest)", seed,
                     lambda: self.fit(x, y, seed, mix=self.semi_bank(given, n, seed), fraction=a.fraction),
                     fraction=a.fraction)
        elif "semi" in a.rows:
            self.row(case, "+ cVAE semi-supervised (N labels + unlabelled rest)", seed,
                     lambda: self.fit(x, y, seed, mix=self.semi_generator(n, seed), fraction=a.fraction),
                     fraction=a.fraction)
        if "transfer" in a.rows:
            self.row(case, f"+ {generator_label(a.generator)} (transfer: it saw all 60,000 labels)", seed,
                     lambda: self.fit(x, y, seed, mix=genaug.load_generator(a.generator), fraction=a.fraction),
                     fraction=a.fraction)

    def imbalanced(self, seed: int) -> None:
        keep = self.imbalanced_indices(seed)
        x, y = self.x[keep], self.y[keep]
        case = "imbalanced (classes 5-9 cut to 1%)"
        self.row(case, "real only", seed, lambda: self.fit(x, y, seed))
        counts = torch.bincount(y, minlength=10).float()
        balanced = (1 / counts)[y]  # per-image sampling weights: every class equally often
        self.row(case, "real, class-balanced resampling", seed, lambda: self.fit(x, y, seed, weights=balanced))

        def topped_up() -> float:
            gen = self.imbalanced_generator(seed, keep)
            need = (counts.max() - counts).long()
            labels = torch.repeat_interleave(torch.arange(10), need)
            g = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                synth = torch.cat([gen.sample(labels[i : i + 1000], generator=g) for i in range(0, len(labels), 1000)])
            return self.fit(torch.cat([x.float() / 255, synth]), torch.cat([y, labels]), seed)

        need = counts.max() - counts
        share = round(float(need.sum() / (need.sum() + len(y))), 2)  # of the training set, not of a batch
        self.row(case, TOPPED_UP, seed, topped_up, fraction=share)
        # Resample and synthesise: class-balanced batches of real images, a share of each replaced by
        # samples of the same classes (so a rare class is part real, part synthetic).
        self.row(case, RESAMPLED_MIX, seed,
                 lambda: self.fit(x, y, seed, weights=balanced, mix=self.imbalanced_generator(seed, keep),
                                  fraction=self.args.fraction),
                 fraction=self.args.fraction)
        self.row(case, f"balanced real set (all {self.total}; the ceiling)", seed,
                 lambda: self.fit(self.x, self.y, seed))

    def full(self, seed: int) -> None:
        a = self.args
        case = f"full data ({self.total})"
        steps = self.full_steps
        self.row(case, "real only", seed, lambda: self.fit(self.x, self.y, seed, steps=steps), steps=steps)
        self.row(case, f"+ {generator_label(a.generator)}", seed,
                 lambda: self.fit(self.x, self.y, seed, mix=genaug.load_generator(a.generator),
                                  fraction=a.full_fraction, steps=steps), fraction=a.full_fraction, steps=steps)

    # ------------------------------------------------------------------ helpers

    def row(self, case: str, row: str, seed: int, compute: Any, *, fraction: float | None = None,
            steps: int | None = None) -> None:
        """Compute one cached result; rows are reported in the order they are first run."""
        key = f"{case}|{row}|{seed}".replace("/", "_").replace(" ", "_")
        path = self.out / "results" / f"{key}.json"
        if path.exists():
            cached = json.loads(path.read_text())
            asked = {"fraction": fraction, "steps": steps or self.steps}
            if {k: cached[k] for k in asked} != asked:
                raise SystemExit(f"{path} was computed with {({k: cached[k] for k in asked})}, this run asks for "
                                 f"{asked}: give another --out")
            return
        t = time.time()
        acc = compute()
        record = {"case": case, "row": row, "seed": seed, "accuracy": acc, "fraction": fraction,
                  "steps": steps or self.steps, "seconds": round(time.time() - t, 1),
                  "evaluated_on": self.evaluated_on}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record) + "\n")
        tmp.replace(path)
        print(f"[{time.time() - self.start:6.0f} s] {case} | {row} | seed {seed}: {acc * 100:.2f}%", flush=True)

    def fit(self, x: torch.Tensor, y: torch.Tensor, seed: int, *, mix: Any = None, fraction: float = 0.0,
            weights: torch.Tensor | None = None, steps: int | None = None,
            keep: list[Classifier] | None = None) -> float:
        batch_mix = SyntheticBatchMix(mix, fraction=fraction, seed=seed) if mix is not None else None
        return train_and_test(x, y, self.tx, self.ty, steps=steps or self.steps, seed=seed, mix=batch_mix,
                              weights=weights, device=self.args.device, keep=keep)

    def imbalanced_indices(self, seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(2000 + seed)
        parts = []
        for c in range(10):
            idx = (self.y == c).nonzero().squeeze(1)
            if c in RARE:
                idx = idx[torch.randperm(len(idx), generator=g)[: max(2, round(0.01 * len(idx)))]]
            parts.append(idx)
        return torch.cat(parts)

    def train_generator(self, name: str, data: Any, **settings: Any) -> Any:
        folder = self.out / "gen" / name
        if not (folder / "model.safetensors").exists():
            cfg = TrainConfig(family="cvae", progress=False, tensorboard="off", device=self.args.device,
                              checkpoint_every=0, **settings)
            Trainer(cfg, data, out_dir=folder, data_name=name, overwrite=True).fit()
        return genaug.load_generator(str(folder))

    def own_generator(self, n: int, seed: int, idx: torch.Tensor) -> Any:
        steps = 3 if self.tiny else self.args.own_steps
        reps = -(-steps * 64 // len(idx))  # one epoch of the tiled labelled images
        tiled = (self.x[idx].repeat(reps, 1, 1, 1), self.y[idx].repeat(reps))
        return self.train_generator(f"own-{n}-seed{seed}", tiled,
                                    epochs=1, max_steps=steps, seed=seed, batch_size=min(64, len(idx)))

    def semi_generator(self, n: int, seed: int) -> Any:
        # few_labels(seed=1000 + seed) inside the Trainer draws the same labelled images as low_data.
        a = self.args
        extra = {"max_steps": 3, "labeller_epochs": 1} if self.tiny else {"labeller_epochs": a.labeller_epochs}
        if a.labeller_student_steps:
            extra.update(labeller_student_steps=3 if self.tiny else a.labeller_student_steps,
                         labeller_student_rounds=a.labeller_student_rounds)
        return self.train_generator(f"semi-{n}-seed{seed}", (self.x, self.y), epochs=a.semi_epochs,
                                    labels_per_class=n, seed=1000 + seed, **extra)

    def given_semi_generator(self, n: int, seed: int, idx: torch.Tensor) -> Any:
        """--semi-generator for this seed, checked to have been trained from this row's labelled
        images ``idx`` (its card records them)."""
        folder = self.semi_folder(seed)
        gen = genaug.load_generator(folder)
        semi = gen.provenance.get("semi_supervised")
        if not semi:
            raise SystemExit(f"--semi-generator {folder} was not trained semi-supervised (its card has no "
                             "semi_supervised record): train it with `genaug train FAMILY --labels-per-class N`")
        if semi.get("labelled_indices") != idx.tolist():
            raise SystemExit(f"--semi-generator {folder} was trained from other labelled images than this row's "
                             f"({n} per class, seed {seed}): its card has labels_per_class="
                             f"{semi.get('labels_per_class')}, label_seed={semi.get('label_seed')}; train it with "
                             f"--labels-per-class {n} --seed {1000 + seed} on the MNIST training set "
                             "(without --validation)")
        return gen

    def semi_folder(self, seed: int) -> str:
        """--semi-generator with {seed} replaced by ``seed``."""
        return self.args.semi_generator.replace("{seed}", str(seed))

    def semi_bank(self, gen: Any, n: int, seed: int) -> Any:
        """``gen`` itself, or with --semi-bank K a bank of K samples per class of it, exported once
        (a bank already in --out is used only if it was made from these weights and sampler, K and
        --bank-amp)."""
        a = self.args
        if not a.semi_bank:
            return gen
        per_class = 3 if self.tiny else a.semi_bank
        path = self.out / "gen" / f"semi-bank-{n}-seed{seed}-{per_class}-per-class{self.bank_variant()}.h5"
        source = with_sampling(gen, a.bank_sampling, name=self.semi_folder(seed))
        if a.bank_gate:
            source = self.gated(source, n, seed)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.parent / f".{path.name}.partial"  # an interrupted export continues
            export_hdf5(source.set_amp(a.bank_amp), path, per_class=per_class, seed=7, resume=partial.exists(),
                        generator_name=self.semi_folder(seed), progress=False)
        bank = genaug.load_generator(str(path))
        stored = json.loads(bank.provenance.get("generator_config", "{}"))
        made = {"weights sha256": bank.provenance.get("generator_sha256"), "amp": bank.provenance.get("amp"),
                "samples": len(bank), "sampler": stored.get("config")}
        asked = {"weights sha256": weights_sha256(source), "amp": a.bank_amp, "samples": per_class * gen.num_classes,
                 "sampler": json.loads(json.dumps(source.card()["config"]))}  # as the file stores it
        differ = [k for k in asked if made[k] != asked[k]]
        if differ:
            raise SystemExit(f"{path} was exported with other " + "; ".join(
                f"{k} ({made[k]}, this run asks for {asked[k]})" for k in differ) + ": give another --out")
        return bank

    def bank_variant(self, *, text: bool = False) -> str:
        """What --bank-sampling and --bank-gate change: for the row's name, or for the bank's file name."""
        a = self.args
        fields = [f"{k}={json.dumps(v)}" for k, v in sorted(a.bank_sampling.items())]
        if text:
            sampled = f", sampled with {', '.join(fields)}" if fields else ""
            gated = f", gated (a CNN on its own pseudo-labels >= {a.bank_gate})" if a.bank_gate else ""
            return sampled + gated
        return "".join(f"-{f}" for f in fields) + (f"-gate{a.bank_gate}" if a.bank_gate else "")

    def gated(self, gen: Any, n: int, seed: int) -> Any:
        """``gen`` behind a gate: a CNN trained --bank-gate-steps steps on the pseudo-labels that
        ``gen``'s training gave every image (its folder's ``pseudo_labels.safetensors``). The CNN
        sees no label beyond the row's N per class; it is saved once per seed in --out and serves
        any threshold."""
        from safetensors.torch import load_file

        from genaug.train.trainer import PSEUDO_LABELS_NAME

        a = self.args
        threshold = min(a.bank_gate, 0.05) if self.tiny else a.bank_gate  # a 3-step CNN is near uniform
        folder = self.out / "gen" / f"semi-gate-{n}-seed{seed}-steps{a.bank_gate_steps}"
        sha = weights_sha256(gen)
        if not (folder / "config.json").exists():
            labels_path = Path(self.semi_folder(seed)) / PSEUDO_LABELS_NAME
            if not labels_path.is_file():
                raise SystemExit(f"--bank-gate trains its CNN on {labels_path}, which is missing: the generator's "
                                 "run keeps its pseudo-labels there")
            pseudo = load_file(str(labels_path))["labels"]
            if len(pseudo) != len(self.x):
                raise SystemExit(f"{labels_path} labels {len(pseudo)} images, but this run trains on {len(self.x)}")
            steps = 3 if self.tiny else a.bank_gate_steps
            cnn = train_augmented_classifier(self.x, pseudo, steps=steps, num_classes=gen.num_classes,
                                             seed=1000 + seed, device=a.device)
            save_module(cnn.cpu(), "classifier", cnn.config, folder, provenance={"generator_sha256": sha})
        try:
            cnn, card = load_module(folder)
        except genaug.CheckpointError as err:  # e.g. a gate folder of an earlier version of this script
            raise SystemExit(f"{folder} does not hold a gate's CNN ({err}): give another --out") from None
        if card.get("provenance", {}).get("generator_sha256") != sha:
            raise SystemExit(f"{folder} holds a gate trained for a generator with other weights: give another --out")
        return FilteredGenerator(gen, cnn, config=FilterConfig(min_confidence=threshold))

    def imbalanced_generator(self, seed: int, keep: torch.Tensor) -> Any:
        extra = {"max_steps": 3} if self.tiny else {}
        # Class-balanced sampling: the cVAE sees its rare classes as often as the common ones.
        return self.train_generator(f"imbalanced-balanced-seed{seed}", (self.x[keep], self.y[keep]),
                                    epochs=self.args.imbalanced_epochs, seed=seed, sampling="balanced", **extra)


def _rank(case: str, row: str) -> tuple[int, int, float, str]:
    """Cases low (by N), imbalanced, full; in each, real rows first and transfer last."""
    order = {"low": 0, "imb": 1, "ful": 2}.get(case[:3], 3)
    size = int(case.split(", ")[1].split()[0]) if case.startswith("low data, ") else 0
    kind = (0 if row == "real only" else 2.2 if row == RESAMPLED_MIX else 1 if row.startswith("real,")
            else 4 if "transfer" in row else 3 if "semi-supervised" in row else 5 if "ceiling" in row
            else 2.5 if "gated" in row else 2)
    return order, size, kind, row


def report(out: Path) -> dict[str, Any]:
    """The table of every cached result: mean ± std over seeds, per case and row."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    found = [json.loads(path.read_text()) for path in (out / "results").glob("*.json")]
    sets = {r.get("evaluated_on", "test") for r in found}
    if len(sets) > 1:
        raise SystemExit(f"{out} mixes results on {sorted(sets)}; report each from its own folder")
    on = sets.pop() if sets else "test"
    metric = "test accuracy" if on == "test" else "validation accuracy"
    for r in sorted(found, key=lambda r: (_rank(r["case"], r["row"]), r["seed"])):
        rows.setdefault((r["case"], r["row"]), []).append(r)
    lines = [f"| case | row | steps | synthetic share | {metric} (mean ± std) | seeds | vs real only |",
             "|---|---|---|---|---|---|---|"]
    means: dict[tuple[str, str], float] = {}
    table: dict[str, Any] = {"rows": []}
    for (case, row), rs in rows.items():
        accs = [r["accuracy"] * 100 for r in rs]
        means[(case, row)] = statistics.mean(accs)
    for (case, row), rs in rows.items():
        accs = [r["accuracy"] * 100 for r in rs]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        base = means.get((case, "real only"))
        delta = "" if row == "real only" or base is None else f"{means[(case, row)] - base:+.2f}"
        frac = rs[0]["fraction"]
        lines.append(f"| {case} | {row} | {rs[0]['steps']} | {'—' if frac is None else frac} "
                     f"| {statistics.mean(accs):.2f} ± {sd:.2f} "
                     f"| {len(accs)} | {delta} |")
        table["rows"].append({"case": case, "row": row, "fraction": frac, "mean": statistics.mean(accs), "std": sd,
                              "seeds": len(accs), "steps": rs[0]["steps"]})
    imb = "imbalanced (classes 5-9 cut to 1%)"
    low = means.get((imb, "real only"))
    ceiling = next((m for (case, row), m in means.items() if case == imb and row.endswith("the ceiling)")), None)
    if low is not None and ceiling is not None and ceiling > low:
        for row in ("real, class-balanced resampling", TOPPED_UP, RESAMPLED_MIX):
            if (imb, row) in means:
                share = (means[(imb, row)] - low) / (ceiling - low)
                lines.append(f"\n{row}: {share * 100:.0f}% of the gap between imbalanced real only ({low:.2f}%) "
                             f"and the balanced full set ({ceiling:.2f}%) recovered")
                table.setdefault("gap_recovered", {})[row] = share
    steps = sorted({r["steps"] for rs in rows.values() for r in rs})
    where = "" if on == "test" else f" ({on.split('(')[1].rstrip(')')})"
    lines.insert(0, f"MNIST {metric} (%){where}, small CNN trained {' or '.join(map(str, steps))} steps of 128 "
                    "(per case, see the steps column) with random affine augmentation\n")
    table["text"] = "\n".join(lines)
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
