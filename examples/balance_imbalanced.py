"""Top up under-represented classes with synthetic samples.

Some MNIST classes are cut to 1% of their images; a conditional VAE is trained on
what is left with class-balanced sampling (``sampling="balanced"``: it sees the rare
classes as often as the others; with the default uniform order its rare digits were
poor enough to lower accuracy in ``benchmarks/augmentation.py``). A classifier trained
on the imbalanced real data is compared with one trained on the same data balanced
with synthetic samples (``MixedDataset(balance="uniform")``).

    python examples/balance_imbalanced.py --data-root DIR          # full MNIST
    python examples/balance_imbalanced.py     # full MNIST from $GENAUG_DATA if there, else the bundled sample
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from torchvision.transforms import v2

import genaug
from genaug.data import MixedDataset, MNISTSample, full_mnist_available, load_mnist
from genaug.metrics import train_classifier
from genaug.train import TrainConfig, Trainer

TO_TENSOR = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])


@torch.no_grad()
def per_class_accuracy(model: torch.nn.Module, test) -> torch.Tensor:
    loader = torch.utils.data.DataLoader(test, batch_size=512)
    pred = torch.cat([model(x).argmax(1) for x, _ in loader])
    y = torch.as_tensor(test.targets)
    return torch.stack([(pred[y == c] == c).float().mean() for c in range(10)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", help="folder with MNIST/raw (default: $GENAUG_DATA if it holds MNIST, "
                                        "else the bundled sample)")
    ap.add_argument("--cut", default="5,6,7,8,9", help="classes to cut")
    ap.add_argument("--keep", type=float, default=0.01, help="fraction of the cut classes kept")
    ap.add_argument("--gen-epochs", type=int, default=2)
    ap.add_argument("--gen-steps", type=int, default=0, help="cap on cVAE steps (0: none)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    env = os.environ.get("GENAUG_DATA")
    root = args.data_root or (env if env and full_mnist_available(env) else None)
    full = load_mnist(root, transform=TO_TENSOR) if root else MNISTSample(transform=TO_TENSOR)
    test = load_mnist(root, train=False, transform=TO_TENSOR) if root else MNISTSample(train=False, transform=TO_TENSOR)
    cut = [int(c) for c in args.cut.split(",")]
    g = torch.Generator().manual_seed(args.seed)
    keep = torch.ones(len(full.targets), dtype=torch.bool)
    for c in cut:
        idx = (full.targets == c).nonzero().squeeze(1)
        drop = idx[torch.randperm(len(idx), generator=g)[max(1, round(len(idx) * args.keep)):]]
        keep[drop] = False
    idx = keep.nonzero().squeeze(1)
    real = torch.utils.data.Subset(full, idx.tolist())
    real.targets, real.classes, real.data = full.targets[idx], full.classes, full.data[idx]
    print("real images per class:", torch.bincount(real.targets, minlength=10).tolist())

    # The generator sees only the imbalanced data, every class equally often.
    out = tempfile.mkdtemp(prefix="genaug-balance-")
    cfg = TrainConfig(family="cvae", epochs=args.gen_epochs, max_steps=args.gen_steps, batch_size=64, progress=False,
                      sampling="balanced")
    Trainer(cfg, (real.data[:, None], real.targets), out_dir=out).fit()
    gen = genaug.load_generator(out)

    balanced = MixedDataset(real, gen, balance="uniform", output="pil", transform=TO_TENSOR, seed=args.seed)
    print("synthetic images added per class:", balanced.synthetic_counts.tolist())
    a = per_class_accuracy(train_classifier(real, epochs=args.epochs, seed=args.seed), test)
    b = per_class_accuracy(train_classifier(balanced, epochs=args.epochs, seed=args.seed), test)
    print(f"{'':<22}{'all':>8}" + "".join(f"{c:>7}" for c in cut))
    for name, acc in (("real only", a), ("balanced + synthetic", b)):
        print(f"{name:<22}{acc.mean():>8.4f}" + "".join(f"{acc[c]:>7.3f}" for c in cut))


if __name__ == "__main__":
    main()
