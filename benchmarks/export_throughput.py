"""HDF5 export and read-back throughput.

Prints, in one run: pure generation samples/s (no I/O) with a conditional VAE
decoder, export samples/s and MB/s for each size, the process's peak memory,
and read-back samples/s through a DataLoader next to torchvision's MNIST.

    python benchmarks/export_throughput.py --sizes 100000 1000000 --data-root DIR
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from genaug import VAEGenerator, load_generator
from genaug.data import full_mnist_available, load_mnist
from genaug.data.hdf5 import HDF5Dataset, block_generator, export_hdf5, plan_labels, to_uint8
from genaug.models import VAE, VAEConfig


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pure_generation(gen, n: int, batch_size: int) -> float:
    labels = torch.from_numpy(plan_labels(gen.num_classes, n=n))
    start = time.perf_counter()
    for block, lo in enumerate(range(0, n, batch_size)):
        y = labels[lo : lo + batch_size]
        to_uint8(gen.sample(y, generator=block_generator(0, block))).cpu().numpy()
    return n / (time.perf_counter() - start)


def read_rate(ds, workers: int, limit: int) -> float:
    loader = DataLoader(ds, batch_size=256, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    seen, start = 0, time.perf_counter()
    for x, _ in loader:
        seen += len(x)
        if seen >= limit:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", help="saved generator (default: an untrained default cVAE; speed is the same)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--read-limit", type=int, default=20_000)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.generator:
        gen = load_generator(args.generator, device="cpu")
    else:
        gen = VAEGenerator(VAE(VAEConfig(num_classes=10)))
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, batch {args.batch_size}; targets: export >= 0.9x pure generation "
          "with peak RSS < 1 GB, read-back >= 1.0x torchvision MNIST")
    gen_rate = pure_generation(gen, min(args.sizes[0], 50_000), args.batch_size)
    print(f"pure generation: {gen_rate:,.0f} samples/s")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"s{n}.h5"
            start = time.perf_counter()
            export_hdf5(gen, path, n=n, batch_size=args.batch_size, progress=False)
            sec = time.perf_counter() - start
            mb = path.stat().st_size / 1e6
            print(f"export {n:>9,}: {sec:7.1f} s, {n / sec:,.0f} samples/s ({n / sec / gen_rate:.2f}x pure), "
                  f"{mb / sec:.1f} MB/s, file {mb:.0f} MB, peak RSS so far {peak_mb():.0f} MB")
        ds = HDF5Dataset(Path(tmp) / f"s{args.sizes[0]}.h5")
        for w in (0, 2):
            ours = read_rate(ds, w, args.read_limit)
            line = f"read-back workers={w}: genaug HDF5 {ours:,.0f} samples/s"
            if args.data_root and full_mnist_available(args.data_root):
                from torchvision.transforms import v2

                mnist = load_mnist(args.data_root, transform=v2.PILToTensor())
                theirs = read_rate(mnist, w, args.read_limit)
                line += f", torchvision MNIST {theirs:,.0f} samples/s ({ours / theirs:.2f}x)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
