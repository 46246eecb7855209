"""Write an RGB image folder to try genaug on your own kind of data: MNIST digits, padded to
32x32 and coloured with a random hue each, one sub-folder per class.

    python examples/coloured_digits_folder.py --out runs/coloured_digits            # bundled sample
    python examples/coloured_digits_folder.py --data-root DIR --out runs/coloured_digits
    genaug train cdcgan --data runs/coloured_digits --out runs/coloured-cdcgan
"""

from __future__ import annotations

import argparse
import colorsys
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.data import MNISTSample, load_mnist


def coloured(digit: np.ndarray, hue: float) -> np.ndarray:
    """A (28, 28) uint8 digit as a (32, 32, 3) image: the stroke in a bright hue on a dark tint."""
    stroke = np.array(colorsys.hsv_to_rgb(hue, 0.8, 1.0))
    ground = np.array(colorsys.hsv_to_rgb((hue + 0.5) % 1.0, 0.5, 0.2))
    alpha = np.pad(digit, 2).astype(np.float32)[..., None] / 255
    return np.round(255 * (alpha * stroke + (1 - alpha) * ground)).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", help="full MNIST (default: the bundled sample)")
    ap.add_argument("--out", default="runs/coloured_digits")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ds = load_mnist(args.data_root, train=True) if args.data_root else MNISTSample(train=True)
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; choose another --out")
    rng = np.random.default_rng(args.seed)
    hues = rng.random(len(ds))
    for c in range(10):
        (out / str(c)).mkdir(parents=True)
    for i, (img, label) in enumerate(zip(ds.data.numpy(), ds.targets.tolist(), strict=True)):
        Image.fromarray(coloured(img, float(hues[i]))).save(out / str(label) / f"{i:05d}.png")
    print(f"wrote {len(ds)} RGB 32x32 images in {out}")


if __name__ == "__main__":
    main()
