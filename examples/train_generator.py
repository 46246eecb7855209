"""Train a conditional VAE on the bundled MNIST sample, then sample one row per class.

    python examples/train_generator.py --epochs 20 --out runs/example-cvae

Pass --data-root DIR (a folder holding MNIST/raw) to train on the full MNIST set.
"""

from __future__ import annotations

import argparse

import torch
from torchvision.utils import save_image

import genaug
from genaug.data import MNISTSample, load_mnist
from genaug.train import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="cvae")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", default="runs/example-cvae")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    args = ap.parse_args()

    data = load_mnist(args.data_root) if args.data_root else MNISTSample(train=True)
    config = TrainConfig(family=args.family, epochs=args.epochs, max_steps=args.max_steps, batch_size=50)
    result = Trainer(config, data, out_dir=args.out, overwrite=args.overwrite).fit()
    print(f"trained {result.step} steps; last losses: {result.history[-1]}")

    gen = genaug.load_generator(args.out)  # the shareable generator (EMA weights)
    labels = torch.arange(gen.num_classes).repeat_interleave(8) if gen.num_classes else torch.full((64,), -1)
    images = gen.sample(labels, generator=torch.Generator().manual_seed(0))
    save_image(images, f"{args.out}/example_grid.png", nrow=8)
    print(f"wrote {args.out}/example_grid.png")


if __name__ == "__main__":
    main()
