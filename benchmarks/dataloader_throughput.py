"""DataLoader throughput with synthetic data, next to real MNIST, in one run.

(a) torchvision MNIST, real only; (b) 50% mixed via MixedDataset; (c) SyntheticReplace
with p=0.5, first in the Compose (on PIL images) or after PILToTensor (on uint8 tensors);
(d) SyntheticBatchMix (25% replaced per batch); (e) synthetic only;
(f) MixedDataset 50% with pool=True (0 workers: the pool is made on a background thread).
(d) mixes in the training loop's process; with workers it is also run as the DataLoader's
``collate_fn`` (``mix.collate``), so that the workers generate. Each is read for --samples
items with batch 256 and num_workers 0 and 2; every item is a float tensor in [0, 1]. The
cases run in --rounds interleaved rounds and each figure is a case's best round, so that
the bound and the case it bounds are measured under the same machine load.

The bound of a mixing case is what its share of real loading and of generation cost
at the measured rates R (case a; for (c), the same joint (image, label) Compose without
SyntheticReplace) and G (case e), with the same workers:
1 / ((1 - s) / R + s / G) for MixedDataset with synthetic share s, and
1 / (1 / R + p / G) for the transforms, which load every real item and then replace
a share p. The target is >= 0.9x of the bound. Then the memory of iterating part of a 10-million-item
SyntheticDataset with 2 workers.

    python benchmarks/dataloader_throughput.py --data-root DIR [--generator runs/cvae]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from genaug import VAEGenerator, load_generator
from genaug.data import MixedDataset, MNISTSample, SyntheticDataset, load_mnist
from genaug.models import VAE, VAEConfig
from genaug.transforms import SyntheticBatchMix, SyntheticReplace

TO_TENSOR = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])


class WithTransforms(Dataset):
    """Applies a joint (image, label) transform, as torchvision's ``transforms=`` does."""

    def __init__(self, base: Dataset, transforms: v2.Transform) -> None:
        self.base, self.transforms = base, transforms

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        return self.transforms(*self.base[i])


def rate(ds: Dataset, workers: int, samples: int, collate=None, batch_mix=None) -> float:
    loader = DataLoader(ds, batch_size=256, shuffle=True, num_workers=workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0), persistent_workers=False)
    seen = 0
    start = time.perf_counter()
    for x, y in loader:
        if batch_mix is not None:
            x, y = batch_mix(x, y)
        seen += len(y)
        if seen >= samples:
            break
    return seen / (time.perf_counter() - start)


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=None, help="folder with MNIST/raw (default: bundled sample)")
    ap.add_argument("--generator", default=None, help="saved generator (default: untrained default cVAE)")
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each figure is the best")
    args = ap.parse_args()
    torch.manual_seed(0)
    gen = load_generator(args.generator) if args.generator else VAEGenerator(VAE(VAEConfig(num_classes=10)))
    real = load_mnist(args.data_root) if args.data_root else MNISTSample()
    real_t = load_mnist(args.data_root, transform=TO_TENSOR) if args.data_root else MNISTSample(transform=TO_TENSOR)
    n = len(real)
    mix = SyntheticBatchMix(gen, fraction=0.25, seed=0)
    # name: (build -> (dataset, in-loop mix, collate_fn), worker counts)
    cases = {
        "(a) real MNIST": (lambda: (real_t, None, None), (0, 2)),
        "(a) real MNIST, (image, label) transforms": (lambda: (WithTransforms(real, TO_TENSOR), None, None), (0, 2)),
        "(b) MixedDataset 50%": (lambda: (MixedDataset(real_t, gen, synthetic_fraction=0.5), None, None), (0, 2)),
        "(c) SyntheticReplace p=0.5, first (PIL)": (lambda: (WithTransforms(real, v2.Compose([
            SyntheticReplace(gen, p=0.5), TO_TENSOR])), None, None), (0, 2)),
        "(c) SyntheticReplace p=0.5, after PILToTensor": (lambda: (WithTransforms(real, v2.Compose([
            v2.PILToTensor(), SyntheticReplace(gen, p=0.5), v2.ToDtype(torch.float32, scale=True)])),
            None, None), (0, 2)),
        "(d) SyntheticBatchMix 25%, in the loop": (lambda: (real_t, mix, None), (0, 2)),
        "(d) SyntheticBatchMix 25%, as collate_fn": (lambda: (real_t, None, mix.collate), (2,)),
        "(e) synthetic only": (lambda: (SyntheticDataset(gen, size=n, output="tensor"), None, None), (0, 2)),
        "(f) MixedDataset 50% pool": (lambda: (MixedDataset(real_t, gen, synthetic_fraction=0.5, pool=True),
                                               None, None), (0,)),
    }
    # case prefix: (share that is generated, loads every real item too)
    bounds = {"(b)": (0.5, False), "(c)": (0.5, True), "(d)": (0.25, True)}
    print(f"data: {'MNIST train' if args.data_root else 'bundled sample'}; {args.samples} samples per run; "
          f"batch 256; best of {args.rounds} interleaved rounds; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads in the main process; {platform.machine()}, {os.cpu_count()} CPUs")
    rates: dict[str, dict[int, float]] = {name: {} for name in cases}
    rate(real_t, 0, args.samples)  # warm-up
    for _ in range(args.rounds):
        for name, (build, workers) in cases.items():
            for w in workers:
                ds, batch_mix, collate = build()
                r = rate(ds, w, args.samples, collate=collate, batch_mix=batch_mix)
                if isinstance(ds, MixedDataset):
                    ds.close()  # a pool's next epoch must not run on into the next case
                rates[name][w] = max(rates[name].get(w, 0.0), r)
    print("| case | workers | samples/s | vs real only | bound | vs bound (target 0.9) |")
    print("|---|---|---|---|---|---|")
    for name, by_w in rates.items():
        for w, r in by_w.items():
            # SyntheticReplace sits in a joint (image, label) Compose; its real-only rate is that pipeline's.
            real_r = rates["(a) real MNIST" + (", (image, label) transforms" if name.startswith("(c)") else "")][w]
            gen_r = rates["(e) synthetic only"][w]
            bound = "| | "
            if name[:3] in bounds:
                s_, loads_all = bounds[name[:3]]
                b = 1 / ((1 if loads_all else 1 - s_) / real_r + s_ / gen_r)
                bound = f"| {b:,.0f} | {r / b:.2f}"
            print(f"| {name} | {w} | {r:,.0f} | {r / real_r:.2f} {bound} |", flush=True)

    before = rss_mb()
    big = SyntheticDataset(gen, size=10_000_000)
    after_build = rss_mb()
    rate(big, 2, args.samples)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"10M-item SyntheticDataset: +{after_build - before:.0f} MB to build (labels only); "
          f"main process now {rss_mb():.0f} MB (was {before:.0f}); largest worker peak {children:.0f} MB RSS "
          "(RSS counts pages shared with the parent after fork)")


if __name__ == "__main__":
    main()
