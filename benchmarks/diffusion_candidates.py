"""Train several class-conditional diffusion candidates side by side on one accelerator,
choose one on a validation split, and evaluate only that one on the MNIST test set.

Every candidate is the ``cddpm`` preset with other U-Net widths; all train for the same
wall-clock time (``--train-seconds``, then SIGTERM: the trainer saves and stops; its card
records the steps reached, so ``genaug train ... --max-steps N`` repeats the run). Each is
saved with float16 weights, the form in which it would be bundled, and that copy is what is
evaluated. Variants per candidate:

- ``g0``: plain conditional sampling; ``g0.5``: classifier-free guidance 0.5;
- ``gated``: ``g0`` behind the gate of the bundled ``mnist-cddpm-gated`` (min_confidence 0.9).

Each variant is scored with ``genaug evaluate --val-split 0.1 --per-class 500 --tstr-epochs 5``
(54,000 training images, 6,000 held out; the test set is not read). The rule, fixed before any
run: among variants with validation label fidelity >= 99.3%, the highest validation TSTR
(ties: lower FID); then that variant alone gets the test evaluation,
``--per-class 6000 --tstr-epochs 5``. Results go to ``OUT/summary.json`` as they come.

    python benchmarks/diffusion_candidates.py --data-root DIR --out runs/candidates
    python benchmarks/diffusion_candidates.py --data sample --out /tmp/smoke --smoke   # about a minute on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CANDIDATES = {
    # name: U-Net overrides of the cddpm preset (patch 2, blocks 2)
    "w32": {"channels": [32, 64]},                       # the bundled mnist-cddpm's network, 0.92M weights
    "w48": {"channels": [48, 96]},                       # 1.96M weights (3.9 MB as float16)
    "p1": {"patch": 1, "channels": [32, 64, 64]},        # full-resolution first stage, 1.54M weights
}
VARIANTS = ("g0", "g0.5", "gated")
MIN_FIDELITY = 0.993


def genaug_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from genaug.cli import main; sys.exit(main())", *args]


def run_all(cmds: dict[str, list[str]], out: Path, *, seconds: float | None = None) -> dict[str, int]:
    """Run the commands at once (logs in OUT/NAME.log); with ``seconds``, SIGTERM them then."""
    procs = {}
    # One process per command: share the cores instead of each taking all of them.
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // len(cmds)))}
    for name, cmd in cmds.items():
        log = open(out / f"{name}.log", "w")  # noqa: SIM115 - closed below
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
    if seconds is not None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(p.poll() is None for p, _ in procs.values()):
            time.sleep(1.0)
        for p, _ in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    codes = {}
    for name, (p, log) in procs.items():
        codes[name] = p.wait()
        log.close()
    return codes


def make_variants(name: str, out: Path, gate: Any, *, min_confidence: float = 0.9) -> list[str]:
    """Save the candidate as float16 and its sampling variants (float32 copies of the rounded
    weights, so each variant evaluates exactly what a float16 bundle holds); ``gate`` is the
    classifier of the gated variant."""
    import torch

    from genaug.generators.wrappers import FilterConfig, FilteredGenerator, with_sampling
    from genaug.hub import load_generator

    load_generator(out / f"train-{name}").save_pretrained(out / f"cand-{name}", dtype=torch.float16)
    base = load_generator(out / f"cand-{name}")
    made = []
    for variant in VARIANTS:
        tuned = with_sampling(base, {"guidance": 0.5 if variant == "g0.5" else 0.0})
        if variant == "gated":
            tuned = FilteredGenerator(tuned, gate, config=FilterConfig(min_confidence=min_confidence))
        folder = out / f"{name}-{variant}"
        tuned.save_pretrained(folder)
        made.append(folder.name)
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist", help="any genaug --data form (default: mnist)")
    ap.add_argument("--data-root", help="folder holding MNIST/raw (default: $GENAUG_DATA)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--train-seconds", type=float, default=290.0)
    ap.add_argument("--val-seconds", type=float, default=150.0, help="limit of the validation evaluations")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--test-per-class", type=int, default=6000)
    ap.add_argument("--smoke", action="store_true", help="a few steps and tiny evaluations (checks the script)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    summary: dict = {"settings": vars(args), "train": {}, "val": {}, "chosen": None, "test": None}

    def save() -> None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    data = ["--data", args.data, *(["--data-root", args.data_root] if args.data_root else [])]
    t0 = time.monotonic()
    train = {}
    for name in args.candidates:
        # The smoke run samples with 2 DDIM steps (the sampler, not the network, differs).
        model = json.dumps({**CANDIDATES[name], **({"sample_steps": 2} if args.smoke else {})})
        batch = 16 if args.smoke else args.batch_size
        cmd = genaug_cmd("train", "cddpm", *data, "--epochs", "1000", "--batch-size", str(batch),
                         "--seed", "0", "--set", f"model={model}", "--out", str(out / f"train-{name}"),
                         "--no-progress")
        if args.smoke:
            cmd += ["--max-steps", "8", "--set", "checkpoint_every=4"]
        train[f"train-{name}"] = cmd
    codes = run_all(train, out, seconds=None if args.smoke else args.train_seconds)
    for name in args.candidates:
        card_path = out / f"train-{name}" / "config.json"
        prov = json.loads(card_path.read_text())["provenance"] if card_path.exists() else {}
        summary["train"][name] = {"exit": codes[f"train-{name}"], "steps": prov.get("steps"),
                                  "epochs": prov.get("epochs"), "model": CANDIDATES[name]}
    summary["train_wall_s"] = round(time.monotonic() - t0, 1)
    save()

    from genaug.hub import load_generator

    gate = load_generator("mnist-cddpm-gated").judge  # the bundled gate, loaded once
    threshold = 0.0 if args.smoke else 0.9  # an untrained smoke model would hardly pass the gate
    variants = [v for name in args.candidates if summary["train"][name]["steps"]
                for v in make_variants(name, out, gate, min_confidence=threshold)]
    per_class, epochs = ("20", "1") if args.smoke else ("500", "5")
    evals = {f"val-{v}": genaug_cmd("evaluate", "--generator", str(out / v), *data, "--val-split", "0.1",
                                    "--per-class", per_class, "--tstr-epochs", epochs, "--seed", "0",
                                    "--json", str(out / f"val-{v}.json")) for v in variants}
    t1 = time.monotonic()
    run_all(evals, out, seconds=None if args.smoke else args.val_seconds)
    for v in variants:
        path = out / f"val-{v}.json"
        if path.exists():
            summary["val"][v] = json.loads(path.read_text())
    summary["val_wall_s"] = round(time.monotonic() - t1, 1)
    save()

    scored = summary["val"]
    eligible = [v for v in scored if scored[v]["label_fidelity"] >= MIN_FIDELITY] or list(scored)
    if not eligible:
        raise SystemExit("no variant was evaluated")
    chosen = max(eligible, key=lambda v: (scored[v]["tstr"], -scored[v]["fid"]))
    summary["chosen"] = chosen
    save()
    t2 = time.monotonic()
    test_per_class = "20" if args.smoke else str(args.test_per_class)
    run_all({f"test-{chosen}": genaug_cmd("evaluate", "--generator", str(out / chosen), *data,
                                          "--per-class", test_per_class, "--tstr-epochs", epochs, "--seed", "0",
                                          "--json", str(out / f"test-{chosen}.json"))}, out)
    test = out / f"test-{chosen}.json"
    summary["test"] = json.loads(test.read_text()) if test.exists() else None
    summary["test_wall_s"] = round(time.monotonic() - t2, 1)
    run_all({"grid": genaug_cmd("sample", "--generator", str(out / chosen), "--per-class", "10",
                                "--out", str(out / "grid.png"))}, out)
    save()
    print(json.dumps({k: summary[k] for k in ("train", "chosen", "test")}, indent=1))
    for v, rep in scored.items():
        print(f"{v:<12} fid {rep['fid']:.2f} fidelity {rep['label_fidelity']:.4f} "
              f"tstr {rep['tstr']:.4f} (real {rep['trtr']:.4f}) recall {rep['recall']:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
