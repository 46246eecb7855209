"""Training throughput (images/s) per family: genaug's Trainer next to a plain textbook loop.

Both train the same architecture on the same in-memory data for the same number
of steps in one process, one after the other, repeated ``--repeats`` times (the
median is printed). "genaug loop" is the Trainer's rate over its steps (EMA, loss
checks and logging included); "end-to-end" adds its one-off final checkpoint, grid
and generator files; the plain loop does none of it. The ratio is loop / plain.

``--amp`` instead compares the Trainer with ``amp="off"`` (float32) and ``amp="bf16"``
(bfloat16 autocast, on the CPU too), alternating the two in one process; the ratio is
bf16 / float32. bf16 pays off on CPUs with AVX512-BF16 or AMX (``lscpu | grep bf16``).

``--models NAME=JSON ...`` instead compares the Trainer with other model settings of each family
(the ``model`` overrides of ``genaug train --set 'model={...}'``), alternating them in one process
under ``--model-amp``; the ratio is each one's step time over the first one's, so it says what a
wider network costs per step before a long run is planned.

    python benchmarks/train_throughput.py --steps 60 --batch-size 64
    python benchmarks/train_throughput.py --amp --families cddpm cdcgan cvae --steps 30 --batch-size 128
    python benchmarks/train_throughput.py --families cddpm --steps 20 --batch-size 128 --model-amp bf16 \
        --models 'w32={"channels": [32, 64]}' 'w48={"channels": [48, 96]}' 'w64={"channels": [64, 128]}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from genaug.data import MNISTSample, as_tensors, full_mnist_available, load_mnist
from genaug.models import build_model, make_config
from genaug.train import PRESETS, TrainConfig, Trainer, list_training_families


def plain_loop(family: str, cfg: TrainConfig, model_cfg, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """The loop a textbook would write: DataLoader, forward, loss, backward, step."""
    torch.manual_seed(0)
    preset = PRESETS[family]
    bs, cfg = cfg.batch_size, cfg.recipe
    model = build_model(preset.model, model_cfg)
    data = x * 2 - 1 if cfg.input_range == "tanh" else x
    loader = DataLoader(TensorDataset(data, y), batch_size=bs, shuffle=True, drop_last=True)
    cond = getattr(model_cfg, "num_classes", 0) > 0

    def opt(params):
        if cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=cfg.lr)
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)

    if preset.objective in ("reconstruction", "vae"):
        o = opt(model.parameters())
    else:
        G, D = model.generator, model.discriminator
        og, od = opt(G.parameters()), opt(D.parameters())
        k = 0.0
    step = 0
    start = time.perf_counter()
    while step < steps:
        for xb, yb in loader:
            lab = yb if cond else None
            if preset.objective == "reconstruction":
                loss = F.binary_cross_entropy_with_logits(model(xb), xb, reduction="sum") / len(xb)
                o.zero_grad(); loss.backward(); o.step()
            elif preset.objective == "vae":
                logits, mu, logvar = model(xb, lab)
                rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum") / len(xb)
                kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
                loss = rec + kl
                o.zero_grad(); loss.backward(); o.step()
            elif preset.objective == "began":
                z = torch.randn(len(xb), model_cfg.latent_dim)
                fake = G(z, lab)
                l_real = (D(xb, lab) - xb).abs().mean()
                l_fake = (D(fake.detach(), lab) - fake.detach()).abs().mean()
                od.zero_grad(); (l_real - k * l_fake).backward(); od.step()
                fake = G(torch.randn(len(xb), model_cfg.latent_dim), lab)
                l_g = (D(fake, lab) - fake).abs().mean()
                og.zero_grad(); l_g.backward(); og.step()
                k = min(max(k + cfg.began_lambda_k * (cfg.began_gamma * l_real.item() - l_g.item()), 0.0), 1.0)
            else:
                z = torch.randn(len(xb), model_cfg.latent_dim)
                fake = G(z, lab).detach()
                real_s, fake_s = D(xb, lab), D(fake, lab)
                if cfg.gan_loss == "wasserstein":
                    loss_d = fake_s.mean() - real_s.mean()
                    if cfg.lipschitz == "gp":
                        eps = torch.rand(len(xb), 1, 1, 1)
                        xh = (eps * xb + (1 - eps) * fake).requires_grad_(True)
                        (g,) = torch.autograd.grad(D(xh, lab).sum(), xh, create_graph=True)
                        loss_d = loss_d + cfg.gp_weight * ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
                else:
                    loss_d = F.softplus(-real_s).mean() + F.softplus(fake_s).mean()
                od.zero_grad(); loss_d.backward(); od.step()
                if cfg.gan_loss == "wasserstein" and cfg.lipschitz == "clip":
                    for p in D.parameters():
                        p.data.clamp_(-cfg.clip_value, cfg.clip_value)
                if (step + 1) % cfg.d_steps == 0:
                    s = D(G(torch.randn(len(xb), model_cfg.latent_dim), lab), lab)
                    loss_g = -s.mean() if cfg.gan_loss == "wasserstein" else F.softplus(-s).mean()
                    og.zero_grad(); loss_g.backward(); og.step()
            step += 1
            if step >= steps:
                break
    return steps * bs / (time.perf_counter() - start)


def genaug_loop(family: str, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int, amp: str = "off",
                model: dict | None = None):
    """(rate in the loop, rate end to end incl. the final checkpoint, grid and generator files, trainer)."""
    cfg = TrainConfig(family=family, max_steps=steps, epochs=10**6, batch_size=batch_size, progress=False,
                      device="cpu", tensorboard="off", checkpoint_every=0, log_every=10**9, amp=amp,
                      model=dict(model or {}))
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, (x, y), out_dir=out)
        start = time.perf_counter()
        trainer.fit()
        end_to_end = steps * batch_size / (time.perf_counter() - start)
    # The Trainer logs its in-loop rate on the last step (clock started at the epoch's first step).
    return trainer.history[-1]["images_per_s"], end_to_end, trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--families", nargs="*", default=list_training_families())
    ap.add_argument("--data-root", default=None, help="folder with MNIST/raw (default: bundled sample)")
    ap.add_argument("--amp", action="store_true", help="compare amp='off' with amp='bf16' instead")
    ap.add_argument("--models", nargs="+", metavar="NAME=JSON", type=model_variant,
                    help="compare these model settings of each family instead (the first is the reference)")
    ap.add_argument("--model-amp", choices=("off", "bf16"), default="off", help="amp of the --models runs")
    args = ap.parse_args()
    if args.models and args.amp:
        ap.error("--models and --amp are two different comparisons: give one")
    if args.models and len({name for name, _ in args.models}) != len(args.models):
        ap.error(f"--models names must differ, got {[name for name, _ in args.models]}")
    if args.data_root and full_mnist_available(args.data_root):
        x, y = as_tensors(load_mnist(args.data_root))
        source = "MNIST train"
    else:
        x, y = as_tensors(MNISTSample())
        source = "bundled MNIST sample"
    x = x.float() / 255
    print(f"data: {source}; steps {args.steps}; batch {args.batch_size}; torch {torch.__version__}; "
          f"threads {torch.get_num_threads()}; median of {args.repeats}")
    if args.amp:
        compare_amp(args, x, y)
        return
    if args.models:
        compare_models(args, x, y)
        return
    print(f"{'family':<12}{'genaug loop':>12}{'end-to-end':>12}{'plain loop':>12}{'ratio':>8}  (img/s)")
    for family in args.families:
        ours, total, plain = [], [], []
        cfg = TrainConfig(family=family, batch_size=args.batch_size)
        model_cfg = make_config(cfg.preset.model, cfg.model_config(image_shape=tuple(x.shape[1:]), num_classes=10))
        plain_loop(family, cfg, model_cfg, x, y, 3)  # warm-up: allocator and kernels
        for r in range(args.repeats):
            # Alternate the order so neither loop always runs on a warmer process.
            if r % 2:
                plain.append(plain_loop(family, cfg, model_cfg, x, y, args.steps))
            rate, e2e, _ = genaug_loop(family, x, y, args.steps, args.batch_size)
            ours.append(rate)
            total.append(e2e)
            if not r % 2:
                plain.append(plain_loop(family, cfg, model_cfg, x, y, args.steps))
        a, t, b = statistics.median(ours), statistics.median(total), statistics.median(plain)
        print(f"{family:<12}{a:>12.0f}{t:>12.0f}{b:>12.0f}{a / b:>8.2f}", flush=True)


def compare_amp(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> None:
    """The Trainer's in-loop rate with float32 and with bf16 autocast, alternated per repeat."""
    print(f"{'family':<12}{'float32':>12}{'bf16':>12}{'ratio':>8}  (img/s in the loop)")
    for family in args.families:
        genaug_loop(family, x, y, 3, args.batch_size)  # warm-up
        rates: dict[str, list[float]] = {"off": [], "bf16": []}
        for r in range(args.repeats):
            for amp in (("off", "bf16") if r % 2 == 0 else ("bf16", "off")):
                rates[amp].append(genaug_loop(family, x, y, args.steps, args.batch_size, amp)[0])
        a, b = statistics.median(rates["off"]), statistics.median(rates["bf16"])
        print(f"{family:<12}{a:>12.0f}{b:>12.0f}{b / a:>8.2f}", flush=True)


def model_variant(text: str) -> tuple[str, dict]:
    """``NAME=JSON`` (a JSON object of model settings) as (name, settings)."""
    name, sep, value = text.partition("=")
    try:
        settings = json.loads(value) if sep and name else None
    except json.JSONDecodeError:
        settings = None
    if not isinstance(settings, dict):
        raise argparse.ArgumentTypeError(f"expected NAME=JSON with a JSON object, e.g. "
                                         f"'w48={{\"channels\": [48, 96]}}', got {text!r}")
    return name, settings


def compare_models(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> None:
    """The Trainer's in-loop rate for each model setting, alternated per repeat."""
    names = [name for name, _ in args.models]
    print(f"amp {args.model_amp}")
    print(f"{'family':<12}{'model':<16}{'weights':>12}{'img/s':>10}{'step time ratio':>18}")
    for family in args.families:
        sizes = {}
        for name, settings in args.models:  # warm-up, and each one's size
            trainer = genaug_loop(family, x, y, 2, args.batch_size, args.model_amp, settings)[2]
            sizes[name] = sum(p.numel() for net in trainer.recipe.nets.values() for p in net.parameters())
        rates: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.repeats):
            for name, settings in (args.models if r % 2 == 0 else args.models[::-1]):
                rates[name].append(genaug_loop(family, x, y, args.steps, args.batch_size, args.model_amp,
                                               settings)[0])
        ref = statistics.median(rates[names[0]])
        for name in names:
            rate = statistics.median(rates[name])
            print(f"{family:<12}{name:<16}{sizes[name]:>12,}{rate:>10.0f}{ref / rate:>18.2f}", flush=True)


if __name__ == "__main__":
    main()
