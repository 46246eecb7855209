"""Mix synthetic digits into every batch of a small labelled set, and compare accuracy.

The recipe that helped most in ``benchmarks/augmentation.py`` with few labels: half of
every batch replaced by samples of a conditional generator (``SyntheticBatchMix`` as
the DataLoader's ``collate_fn``), then the same random affine augmentation for real and
synthetic images. The generator is the bundled ``mnist-cvae`` by default. With only a
few labels of your own and many unlabelled images, the best generator in the benchmark is a
diffusion model trained from both (``genaug train cddpm --labels-per-class K``), sampled once
into a bank (``genaug export``) because it is slow to sample on a CPU; an ``.h5`` bank works
wherever a generator does:

    python examples/drop_into_dataloader.py --data-root DIR        # 10 labelled images per class
    python examples/drop_into_dataloader.py     # full MNIST from $GENAUG_DATA if there, else the bundled sample
    genaug train cddpm --data mnist --data-root DIR --labels-per-class 10 --labeller-epochs 20 \\
        --labeller-student-steps 3000 --labeller-student-rounds 2 --epochs 20 --batch-size 128 --set amp=bf16 \\
        --out runs/semi
    genaug export --generator runs/semi --per-class 1000 --amp bf16 --out runs/semi-bank.h5
    python examples/drop_into_dataloader.py --generator runs/semi-bank.h5 --data-root DIR
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import v2

import genaug
from genaug.data import MNISTSample, full_mnist_available, load_mnist
from genaug.metrics import accuracy
from genaug.models import Classifier, ClassifierConfig
from genaug.train.recipes.ssgan import few_labels
from genaug.transforms import SyntheticBatchMix

TO_TENSOR = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
AUGMENT = v2.RandomAffine(degrees=10, translate=(0.07, 0.07), scale=(0.9, 1.1))


def train(loader: DataLoader, steps: int, seed: int) -> Classifier:
    """The fixed small CNN, Adam with a linearly decaying learning rate, per-image augmentation."""
    torch.manual_seed(seed)
    model = Classifier(ClassifierConfig())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / steps)
    step = 0
    while step < steps:
        for x, y in loader:
            x = torch.stack([AUGMENT(img) for img in x])
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step == steps:
                break
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", default="mnist-cvae", help="a conditional generator (folder or registered name)")
    ap.add_argument("--data-root", help="folder with MNIST/raw (default: $GENAUG_DATA if it holds MNIST, "
                                        "else the bundled sample)")
    ap.add_argument("--per-class", type=int, default=10, help="labelled real images per class")
    ap.add_argument("--fraction", type=float, default=0.5, help="synthetic share of every batch")
    ap.add_argument("--steps", type=int, default=1000, help="classifier steps of 128 images")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    env = os.environ.get("GENAUG_DATA")
    root = args.data_root or (env if env and full_mnist_available(env) else None)
    if root:
        full = load_mnist(root, transform=TO_TENSOR)
        test = load_mnist(root, train=False, transform=TO_TENSOR)
    else:
        full = MNISTSample(train=True, transform=TO_TENSOR)
        test = MNISTSample(train=False, transform=TO_TENSOR)
    real = Subset(full, few_labels(torch.as_tensor(full.targets), args.per_class, seed=args.seed).tolist())
    gen = genaug.load_generator(args.generator)

    def loader(collate_fn=None) -> DataLoader:
        # Small real sets are repeated so that every batch is full.
        repeats = max(1, -(-128 // len(real)))
        data = torch.utils.data.ConcatDataset([real] * repeats)
        return DataLoader(data, batch_size=128, shuffle=True, drop_last=True, collate_fn=collate_fn,
                          generator=torch.Generator().manual_seed(args.seed))

    # The one line: half of every batch becomes synthetic, with the batch's labels.
    mix = SyntheticBatchMix(gen, fraction=args.fraction, seed=args.seed, classes=full.classes)
    real_only = train(loader(), args.steps, args.seed)
    with_synthetic = train(loader(mix.collate), args.steps, args.seed)
    print(f"real training images: {len(real)} ({args.per_class} per class); test images: {len(test)}; "
          f"generator: {args.generator}; synthetic share of a batch: {args.fraction}")
    print(f"accuracy real only:        {accuracy(real_only, test):.4f}")
    print(f"accuracy real + synthetic: {accuracy(with_synthetic, test):.4f}")


if __name__ == "__main__":
    main()
