"""Classifiers from few labels: random init against pretrained backbones, with and without
synthetic mixing from a conditional VAE that sees only the allowed labels.

Backbones are pretrained on unlabelled MNIST training images (labels unused) with
``genaug train autoencoder|vae|dcgan --data mnist --out RUNS/<family>``; the default
RUNS layout is RUNS/autoencoder, RUNS/vae, RUNS/dcgan. For each seed, K labelled images
per class are drawn; the conditional VAE for mixing is trained on those images only.
Every classifier is fine-tuned for the same number of steps and tested on the 10,000
MNIST test images. Mean and std over seeds are printed.

    python benchmarks/few_labels.py --runs RUNS --data-root DIR
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch.utils.data import ConcatDataset, TensorDataset

import genaug
from genaug.data import SyntheticDataset, as_tensors, load_mnist
from genaug.metrics import accuracy, train_classifier
from genaug.pretrain import build_classifier, few_label_indices, load_backbone, random_backbone_like
from genaug.train import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="folder with autoencoder/, vae/ and dcgan/ training outputs")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--labels", type=int, nargs="+", default=[10, 100], help="labels per class")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=400, help="fine-tuning steps (batch 64)")
    ap.add_argument("--synthetic", type=int, default=2000, help="synthetic images per class when mixing")
    ap.add_argument("--cvae-steps", type=int, default=1500)
    args = ap.parse_args()
    torch.manual_seed(0)
    x, y = as_tensors(load_mnist(args.data_root))
    tx, ty = as_tensors(load_mnist(args.data_root, train=False))
    test = TensorDataset(tx.float() / 255, ty)
    backbones = {name: load_backbone(f"{args.runs}/{name}") for name in ("autoencoder", "vae", "dcgan")}
    recipes = {"random init": random_backbone_like(backbones["autoencoder"]),
               "autoencoder": backbones["autoencoder"], "vae": backbones["vae"],
               "dcgan discriminator": backbones["dcgan"]}
    results: dict[tuple[str, int, bool], list[float]] = {}
    start = time.time()
    for k in args.labels:
        for seed in range(args.seeds):
            idx = few_label_indices(y, k, seed=1000 + seed)
            labelled = TensorDataset(x[idx].float() / 255, y[idx])
            # The conditional VAE sees only the labelled images.
            with tempfile.TemporaryDirectory() as out:
                # Tile the few images so the whole run is one epoch (no per-epoch grids and files).
                reps = -(-args.cvae_steps * 64 // len(idx))
                cfg = TrainConfig(family="cvae", epochs=1, max_steps=args.cvae_steps, batch_size=64,
                                  progress=False, seed=seed, tensorboard="off")
                Trainer(cfg, (x[idx].repeat(reps, 1, 1, 1), y[idx].repeat(reps)), out_dir=out).fit()
                gen = genaug.load_generator(out)
            synthetic = SyntheticDataset(gen, per_class=args.synthetic, seed=seed, target_transform=torch.tensor)
            for name, backbone in recipes.items():
                for mix in (False, True):
                    data = ConcatDataset([labelled, synthetic]) if mix else labelled
                    # Repeat the small labelled set so every recipe gets the same number of steps.
                    epochs = max(1, round(args.steps * 64 / len(data)))
                    torch.manual_seed(seed)
                    clf = build_classifier(_copy(backbone), 10, freeze="none")
                    train_classifier(data, model=clf, epochs=epochs, batch_size=64, seed=seed, device="cpu")
                    acc = accuracy(clf, test)
                    results.setdefault((name, k, mix), []).append(acc)
            print(f"  done {k} labels/class, seed {seed} ({time.time() - start:.0f} s)", flush=True)

    print(f"\nMNIST test accuracy (mean ± std over {args.seeds} seeds); fine-tuning {args.steps} steps of 64; "
          f"mixing adds {args.synthetic} cVAE samples per class")
    columns = [(k, mix) for k in args.labels for mix in (False, True)]
    titles = [f"{k * 10} labels" + (" + synth." if mix else "") for k, mix in columns]
    print(f"{'backbone':<22}" + "".join(f"{t:>22}" for t in titles))
    for name in recipes:
        cells = []
        for k, mix in columns:
            r = results[(name, k, mix)]
            sd = statistics.stdev(r) if len(r) > 1 else 0.0
            cells.append(f"{statistics.mean(r) * 100:.1f} ± {sd * 100:.1f}")
        print(f"{name:<22}" + "".join(f"{c:>22}" for c in cells))


def _copy(module: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module)


if __name__ == "__main__":
    main()
