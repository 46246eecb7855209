"""What each training preset builds for an image shape: stride-2 stages, channels and parameters.

    python benchmarks/architectures.py
    python benchmarks/architectures.py --shapes 1x28x28 3x64x64 --families cdcgan cvae

Prints a Markdown table (no training, no data: the models are only built).
"""

from __future__ import annotations

import argparse

from genaug.models import build_model, make_config
from genaug.train import TrainConfig, list_training_families


def _shape(text: str) -> tuple[int, int, int]:
    c, h, w = (int(v) for v in text.lower().split("x"))
    return c, h, w


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", type=_shape, default=[(1, 16, 16), (1, 28, 28), (3, 32, 32),
                                                               (3, 28, 36), (3, 64, 64)])
    p.add_argument("--families", nargs="+", default=None)
    args = p.parse_args()
    print("| preset | C x H x W | channels per stage | parameters |")
    print("|---|---|---|---|")
    for family in args.families or list_training_families():
        cfg = TrainConfig(family=family)
        for shape in args.shapes:
            model_cfg = cfg.model_config(image_shape=shape, num_classes=10)
            built = make_config(cfg.preset.model, model_cfg)
            stages = "; ".join(f"{k} {tuple(v)}" for k, v in built.to_dict().items() if k.endswith("channels"))
            n = sum(p.numel() for p in build_model(cfg.preset.model, model_cfg).parameters())
            print(f"| {family} | {'x'.join(map(str, shape))} | {stages or 'dense (MLP)'} | {n / 1e6:.2f} M |")


if __name__ == "__main__":
    main()
