"""Sampling throughput of the bundled generators against the machine's FLOP limit.

The limit is this machine's fp32 GEMM rate (a 2048 x 2048 matmul, measured in
the same run) divided by the generator's FLOPs per sample, counted with
``torch.utils.flop_counter``. For each batch size the table gives the best of
``--repeats`` timed ``sample`` calls, once with the default decode chunk and
once decoding the whole batch in one pass (the behaviour before chunking).

    python benchmarks/sampling.py --batch-sizes 64 256 1024 4096
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from genaug import load_generator

TARGET = 0.70  # of the FLOP limit


def gemm_flops(size: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size**3 * reps / (time.perf_counter() - start)


def flops_per_sample(gen, n: int = 64) -> float:
    with FlopCounterMode(display=False) as counter:
        gen.sample(torch.arange(n) % max(gen.num_classes, 1) if gen.num_classes else torch.full((n,), -1))
    return counter.get_total_flops() / n


def rate(gen, batch: int, repeats: int) -> float:
    labels = torch.arange(batch) % gen.num_classes
    gen.sample(labels, generator=torch.Generator().manual_seed(0))  # warm-up
    best = 0.0
    for r in range(repeats):
        start = time.perf_counter()
        gen.sample(labels, generator=torch.Generator().manual_seed(r))
        best = max(best, batch / (time.perf_counter() - start))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generators", nargs="+", default=["mnist-cdcgan", "mnist-cvae"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024, 4096])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, cpu")
    gemm = gemm_flops()
    print(f"fp32 GEMM: {gemm / 1e9:.1f} GFLOP/s; target {TARGET:.0%} of the limit\n")
    print("| generator | MFLOP/sample | limit (samples/s) | batch | chunked (samples/s, % of limit) "
          "| one pass (samples/s, % of limit) | target met |")
    print("|---|---|---|---|---|---|---|")
    missed = False
    for name in args.generators:
        gen = load_generator(name, device="cpu")
        fps = flops_per_sample(gen)
        limit = gemm / fps
        for batch in args.batch_sizes:
            chunked = rate(gen, batch, args.repeats)
            gen.decode_chunk = 10**9  # instance attribute: this generator only
            whole = rate(gen, batch, args.repeats)
            del gen.decode_chunk
            met = "yes" if chunked >= TARGET * limit else f"no, {TARGET * limit - chunked:,.0f}/s short"
            missed |= met != "yes"
            print(f"| {name} | {fps / 1e6:.1f} | {limit:,.0f} | {batch} | {chunked:,.0f} ({chunked / limit:.0%}) "
                  f"| {whole:,.0f} ({whole / limit:.0%}) | {met} |", flush=True)
    if missed:
        print("\nWhy short: most of the FLOPs are in ConvTranspose2d layers, and oneDNN runs those on CPU at a "
              "fraction of the GEMM rate (torch.profiler: aten::_convolution is 75% of the time).")


if __name__ == "__main__":
    main()
