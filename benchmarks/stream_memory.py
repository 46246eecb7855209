"""Peak memory of training from an image folder larger than memory allows to cache.

Generates a folder of N RGB 64x64 PNGs in ten classes (coloured shapes on noise, seeded), then
runs ``genaug train FAMILY --data FOLDER`` for a few hundred steps and samples the resident memory
(RSS) of the whole process tree (the trainer and its DataLoader workers) from /proc. Linux only.

    python benchmarks/stream_memory.py --n 200000 --max-steps 200
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def write_folder(out: Path, n: int, size: int = 64) -> None:
    if (out / "done").is_file() and (out / "done").read_text() == str(n):
        return
    rng = np.random.default_rng(0)
    for c in range(10):
        (out / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % 10
        base = rng.integers(0, 64, (size, size, 3), dtype=np.uint8)
        img = Image.fromarray(base)
        draw = ImageDraw.Draw(img)
        x0, y0 = rng.integers(4, size // 2, 2)
        colour = tuple(int(v) for v in rng.integers(100, 256, 3))
        box = [int(x0), int(y0), int(x0) + 8 + 2 * c, int(y0) + 8 + 2 * c]
        (draw.ellipse if c % 2 else draw.rectangle)(box, fill=colour)
        img.save(out / f"class_{c}" / f"{i:07d}.png", compress_level=1)
    (out / "done").write_text(str(n))


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of pid, RSS of pid and all its descendants), bytes."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return rss.get(pid, 0), total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--family", default="cvae")
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--num-workers", type=int, default=2)
    ap.add_argument("--out", default="runs/stream_memory")
    args = ap.parse_args()
    out = Path(args.out)
    t = time.perf_counter()
    write_folder(out / "images", args.n)
    print(f"{args.n} images ready in {time.perf_counter() - t:.0f} s", flush=True)
    cmd = [sys.executable, "-m", "genaug.cli", "train", args.family, "--data", str(out / "images"),
           "--max-steps", str(args.max_steps), "--out", str(out / "run"), "--overwrite", "--no-progress",
           "--set", 'tensorboard="off"', "--set", f"num_workers={args.num_workers}"]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak_main = peak_tree = 0
    while proc.poll() is None:
        main_rss, total = tree_rss(proc.pid)
        peak_main, peak_tree = max(peak_main, main_rss), max(peak_tree, total)
        time.sleep(0.2)
    secs = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"training failed with exit status {proc.returncode}")
    raw = args.n * 3 * 64 * 64
    print(f"\n{args.family} on {args.n} RGB 64x64 PNGs ({raw / 2**30:.2f} GiB as uint8), {args.max_steps} steps, "
          f"{args.num_workers} workers; {platform.machine()}, {os.cpu_count()} cores; {secs:.0f} s")
    print(f"peak RSS: trainer {peak_main / 2**30:.2f} GiB, trainer + workers {peak_tree / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
