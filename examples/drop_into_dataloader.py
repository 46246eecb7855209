"""Add synthetic digits to a real training set with one line, and compare accuracy.

    python examples/drop_into_dataloader.py                      # bundled MNIST sample
    python examples/drop_into_dataloader.py --generator runs/cvae --data-root DIR

Without --generator, a conditional VAE is first trained on the same real images.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torchvision.transforms import v2

import genaug
from genaug.data import MixedDataset, MNISTSample, load_mnist
from genaug.metrics import accuracy, train_classifier
from genaug.train import TrainConfig, Trainer

TO_TENSOR = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", help="a saved conditional generator (folder or registered name)")
    ap.add_argument("--data-root", help="folder with MNIST/raw; default: the bundled sample")
    ap.add_argument("--real", type=int, default=1000, help="real training images to use")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--gen-steps", type=int, default=1500, help="cVAE steps when no --generator is given")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.data_root:
        full = load_mnist(args.data_root, transform=TO_TENSOR)
        idx = torch.randperm(len(full), generator=torch.Generator().manual_seed(args.seed))[: args.real]
        real = torch.utils.data.Subset(full, idx.tolist())
        real.targets, real.classes, real.data = full.targets[idx], full.classes, full.data[idx]
        test = load_mnist(args.data_root, train=False, transform=TO_TENSOR)
    else:
        real = MNISTSample(train=True, transform=TO_TENSOR)
        test = MNISTSample(train=False, transform=TO_TENSOR)

    if args.generator:
        gen = genaug.load_generator(args.generator)
    else:
        out = tempfile.mkdtemp(prefix="genaug-cvae-")
        images = real.data[:, None] if real.data.ndim == 3 else real.data
        cfg = TrainConfig(family="cvae", epochs=10**6, max_steps=args.gen_steps, batch_size=50, progress=False)
        Trainer(cfg, (images, real.targets), out_dir=out).fit()
        gen = genaug.load_generator(out)

    # The one line: real images plus as many synthetic ones, same transform.
    mixed = MixedDataset(real, gen, synthetic_fraction=0.5, output="pil", transform=TO_TENSOR, seed=args.seed)

    real_only = train_classifier(real, epochs=args.epochs, seed=args.seed)
    with_synthetic = train_classifier(mixed, epochs=args.epochs, seed=args.seed)
    print(f"test images: {len(test)}; real training images: {len(real)}; synthetic added: {len(mixed) - len(real)}")
    print(f"accuracy real only:        {accuracy(real_only, test):.4f}")
    print(f"accuracy real + synthetic: {accuracy(with_synthetic, test):.4f}")


if __name__ == "__main__":
    main()
