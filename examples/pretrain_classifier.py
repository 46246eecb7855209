"""Pretrain an autoencoder on unlabelled images, then fine-tune a classifier on 10 labels per class.

    python examples/pretrain_classifier.py --data-root DIR     # full MNIST (a few minutes on a CPU)
    python examples/pretrain_classifier.py                     # bundled sample

Prints the test accuracy of the pretrained backbone next to the same architecture from random init.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch.utils.data import TensorDataset

from genaug.data import MNISTSample, as_tensors, load_mnist
from genaug.metrics import accuracy, train_classifier
from genaug.pretrain import build_classifier, few_label_indices, load_backbone, random_backbone_like
from genaug.train import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root")
    ap.add_argument("--family", default="autoencoder", help="autoencoder, vae, dcgan, ...")
    ap.add_argument("--epochs", type=int, default=1, help="pretraining epochs (full MNIST) ")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--labels-per-class", type=int, default=10)
    ap.add_argument("--finetune-steps", type=int, default=300)
    args = ap.parse_args()

    train = load_mnist(args.data_root) if args.data_root else MNISTSample()
    test = load_mnist(args.data_root, train=False) if args.data_root else MNISTSample(train=False)
    x, y = as_tensors(train)
    tx, ty = as_tensors(test)
    test_set = TensorDataset(tx.float() / 255, ty)

    # 1. Pretrain on all training images, without their labels.
    out = tempfile.mkdtemp(prefix="genaug-pretrain-")
    epochs = args.epochs if args.data_root else 20 * args.epochs
    cfg = TrainConfig(family=args.family, epochs=epochs, max_steps=args.max_steps, progress=False)
    Trainer(cfg, (x, torch.zeros_like(y)), out_dir=out).fit()
    backbone = load_backbone(out)

    # 2. Fine-tune on a few labels: pretrained against random init of the same architecture.
    idx = few_label_indices(y, args.labels_per_class, seed=0)
    labelled = TensorDataset(x[idx].float() / 255, y[idx])
    epochs = max(1, round(args.finetune_steps * 64 / len(labelled)))
    for name, bb in (("random init", random_backbone_like(backbone)), (f"{args.family} pretrained", backbone)):
        clf = build_classifier(bb, 10)
        train_classifier(labelled, model=clf, epochs=epochs, batch_size=64, seed=0)
        print(f"{name:<24} {len(labelled)} labels: test accuracy {accuracy(clf, test_set):.4f}")


if __name__ == "__main__":
    main()
