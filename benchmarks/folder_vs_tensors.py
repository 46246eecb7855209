"""Training from an image folder gives the same generator quality as training from MNIST's tensors.

Writes the full MNIST training set as a folder of 60,000 PNGs (one sub-folder per class), trains
the same preset with the same seed and steps from ``--data FOLDER`` and from ``--data mnist``, and
evaluates both against MNIST's test set with the bundled judge. Prints one row per source.

    python benchmarks/folder_vs_tensors.py --data-root DIR --max-steps 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

GENAUG = [sys.executable, "-m", "genaug.cli"]


def write_png_folder(root: str, out: Path) -> None:
    from genaug.data import load_mnist

    if (out / "9").is_dir() and sum(1 for _ in out.rglob("*.png")) == 60000:
        return
    ds = load_mnist(root, train=True)
    for c in range(10):
        (out / str(c)).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(ds.data, ds.targets, strict=True)):
        # Named by MNIST index, so each class keeps MNIST's order.
        Image.fromarray(img.numpy(), mode="L").save(out / str(int(label)) / f"{i:05d}.png")


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--family", default="cdcgan")
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", type=int, default=1000)
    ap.add_argument("--out", default="runs/folder_vs_tensors")
    args = ap.parse_args()
    out = Path(args.out)
    folder = out / "mnist_png"
    t = time.perf_counter()
    write_png_folder(args.data_root, folder)
    print(f"PNG folder ready in {time.perf_counter() - t:.0f} s: {folder}", flush=True)
    rows = []
    for source, data in (("--data FOLDER", str(folder)), ("--data mnist", "mnist")):
        run_dir = out / ("folder" if data != "mnist" else "tensors")
        train_s = run([*GENAUG, "train", args.family, "--data", data, "--data-root", args.data_root,
                       "--max-steps", str(args.max_steps), "--seed", str(args.seed), "--epochs", "100",
                       "--out", str(run_dir), "--overwrite", "--no-progress", "--set", 'tensorboard="off"'])
        report = run_dir / "evaluate.json"
        run([*GENAUG, "evaluate", "--generator", str(run_dir), "--data", "mnist", "--data-root", args.data_root,
             "--per-class", str(args.per_class), "--seed", str(args.seed), "--json", str(report), "--overwrite"])
        r = json.loads(report.read_text())
        rows.append((source, train_s, r))
    print(f"\n{args.family}, {args.max_steps} steps, seed {args.seed}; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")
    keys = ["label_fidelity", "tstr", "trtr", "fid", "precision", "recall"]
    print("| source | train s | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for source, secs, r in rows:
        print(f"| {source} | {secs:.0f} | " + " | ".join(
            f"{r[k]:.4f}" if isinstance(r.get(k), float) else str(r.get(k)) for k in keys) + " |")


if __name__ == "__main__":
    main()
