"""Fit a per-class Gaussian mixture prior to the bundled cVAE's latent space and save it.

Ex-post density estimation (Ghosh et al., 2020): the cVAE's decoder is sampled from a mixture
fitted to its encoder's means of the training images instead of N(0, I). Uses full MNIST when
``--data-root`` holds it, else the bundled sample (with fewer components).

    python examples/latent_prior.py --data-root ../data --out runs/cvae-gmm
    genaug evaluate --generator runs/cvae-gmm --data mnist --data-root ../data --per-class 6000 --tstr-epochs 5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image

import genaug
from genaug.data import MNISTSample, as_tensors, full_mnist_available, load_mnist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None, help="folder with MNIST/raw (default: the bundled sample)")
    ap.add_argument("--components", type=int, default=None, help="per class (default: 10, or 2 on the sample)")
    ap.add_argument("--out", default="runs/cvae-gmm")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(f"error: {out} exists and is not empty; pass --overwrite to replace it")
    full = args.data_root is not None and full_mnist_available(args.data_root)
    x, y = as_tensors(load_mnist(args.data_root) if full else MNISTSample())
    x = x.float() / 255
    components = args.components or (10 if full else 2)
    gen = genaug.load_generator("mnist-cvae")
    prior = genaug.fit_latent_prior(gen, x, y, components=components, seed=0)
    prior.save_pretrained(out, provenance={"latent_prior": {
        "components": components, "seed": 0, "fitted_on": f"{'MNIST train' if full else 'bundled sample'} "
                                                           f"({len(x)} images)"}})
    labels = torch.arange(10).repeat(8)
    save_image(prior.sample(labels, generator=torch.Generator().manual_seed(0)), out / "grid.png", nrow=10)
    print(f"fitted {components} components per class on {len(x)} images; saved {out} and {out / 'grid.png'}")


if __name__ == "__main__":
    main()
