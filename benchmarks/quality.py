"""Synthetic-data quality of every family, each trained with the same budget.

Each family is trained on the MNIST training set with ``genaug train`` (same epochs,
batch size and seed, each family's preset otherwise), then measured with
``genaug evaluate`` against the MNIST test set and a judge classifier: judge-FID
(next to the real-vs-real floor), label fidelity (conditional families only),
class coverage, precision/recall and TSTR (next to the real-trained reference).
Unconditional families are labelled by the judge for TSTR. A sample grid per
family is written to OUT/grids/FAMILY.png.

Runs go to OUT/FAMILY; trainings and evaluations run ``--jobs`` at a time (useful on
a GPU, where one small run leaves it mostly idle). ``--time-limit`` stops a training
cleanly (SIGTERM: checkpoint and generator are saved) after that many seconds; the
table then shows the steps it reached.

    python benchmarks/quality.py --data-root DIR --out runs/quality --epochs 5
    python benchmarks/quality.py --data-root DIR --out runs/quality --stage report   # table only
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FAMILIES = ["vae", "cvae", "gan", "cgan", "dcgan", "cdcgan", "wgan", "wgan-gp", "began", "ddpm", "cddpm"]
GENAUG = [sys.executable, "-m", "genaug.cli"]


def run(cmd: list[str], log: Path, *, env: dict[str, str], time_limit: float | None = None) -> int:
    """Run ``cmd`` with output to ``log``; after ``time_limit`` seconds send SIGTERM (clean stop)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        try:
            return proc.wait(timeout=time_limit)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                return proc.wait()


def train_command(args: argparse.Namespace, family: str) -> list[str]:
    return [*GENAUG, "train", family, "--data", "mnist", "--data-root", args.data_root,
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
            "--device", args.device, "--set", "tensorboard=off", "--no-progress",
            "--out", str(Path(args.out) / family), "--overwrite",
            *(["--max-steps", str(args.max_steps)] if args.max_steps else [])]


def evaluate_command(args: argparse.Namespace, family: str) -> list[str]:
    folder = Path(args.out) / family
    return [*GENAUG, "evaluate", "--generator", str(folder), "--judge", args.judge, "--data", "mnist",
            "--data-root", args.data_root, "--per-class", str(args.per_class), "--device", args.device,
            "--json", str(folder / "evaluate.json"), "--overwrite"]


def write_grid(folder: Path, path: Path) -> None:
    import torch
    from torchvision.utils import save_image

    import genaug

    gen = genaug.load_generator(folder)
    k = gen.num_classes
    labels = torch.arange(k).repeat_interleave(10) if k else torch.full((100,), -1)
    images = gen.sample(labels, generator=torch.Generator().manual_seed(0))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, path, nrow=10, padding=1)


def report(args: argparse.Namespace) -> list[dict]:
    rows = []
    for family in args.families:
        folder = Path(args.out) / family
        card_path, eval_path = folder / "config.json", folder / "evaluate.json"
        if not (card_path.exists() and eval_path.exists()):
            print(f"{family}: no generator or evaluation in {folder}; skipped", file=sys.stderr)
            continue
        card = json.loads(card_path.read_text())
        prov = card["provenance"]
        rows.append({"family": family, "steps": prov["steps"], "epochs": prov["epochs"],
                     **json.loads(eval_path.read_text())})
        write_grid(folder, Path(args.out) / "grids" / f"{family}.png")

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v * 100:.1f}"

    lines = [
        f"Each family: {args.epochs} epochs"
        + (f" (at most {args.max_steps} steps)" if args.max_steps else "")
        + f" of MNIST train at batch {args.batch_size}, seed {args.seed}, its preset "
        "otherwise; measured on MNIST test with the judge (FID in the judge's feature space).",
        "",
        "| family | steps | FID | fidelity % | coverage % | TSTR % |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['steps']} | {r['fid']:.3g} | {pct(r['label_fidelity'])} | "
            f"{pct(r['class_coverage'])} | {pct(r['tstr'])} |"
        )
    if rows:
        r = rows[0]
        lines.append(
            f"| real train (floor / reference) | — | {r['fid_real_vs_real']:.3g} | "
            f"{pct(r['label_fidelity_real'])} | 100.0 | {pct(r['trtr'])} |"
        )
    text = "\n".join(lines)
    print(text)
    (Path(args.out) / "quality.md").write_text(text + "\n")
    (Path(args.out) / "quality.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True, help="folder holding MNIST/raw")
    ap.add_argument("--out", default="runs/quality")
    ap.add_argument("--families", nargs="+", default=FAMILIES, choices=FAMILIES)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-steps", type=int, default=0, help="stop each training after this many steps (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge", help="judge folder (default: train one into OUT/judge)")
    ap.add_argument("--judge-epochs", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=1000, help="samples per class for evaluate")
    ap.add_argument("--jobs", type=int, default=1, help="trainings / evaluations run at the same time")
    ap.add_argument("--time-limit", type=float, help="stop each training cleanly after this many seconds")
    ap.add_argument("--stage", choices=("all", "train", "evaluate", "report"), default="all")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // args.jobs))}
    start = time.time()

    if args.stage in ("all", "train"):
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(
                lambda f: run(train_command(args, f), out / "logs" / f"train-{f}.log", env=env,
                              time_limit=args.time_limit), args.families))
        codes = dict(zip(args.families, results, strict=True))
        print(f"trained in {time.time() - start:.0f} s; exit codes {codes}", flush=True)
    if args.stage in ("all", "evaluate"):
        if args.judge is None:
            args.judge = str(out / "judge")
            if not (out / "judge" / "config.json").exists():
                run([*GENAUG, "judge", "train", "--data", "mnist", "--data-root", args.data_root, "--epochs",
                     str(args.judge_epochs), "--device", args.device, "--out", args.judge, "--no-progress"],
                    out / "logs" / "judge.log", env=env)
        done = [f for f in args.families if (out / f / "config.json").exists()]
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(
                lambda f: run(evaluate_command(args, f), out / "logs" / f"evaluate-{f}.log", env=env), done))
        codes = dict(zip(done, results, strict=True))
        print(f"evaluated in {time.time() - start:.0f} s; exit codes {codes}", flush=True)
    report(args)


if __name__ == "__main__":
    main()
