from __future__ import annotations

import torch
from conftest import TINY_MODEL

from genaug.generators import BaseGenerator, GANGenerator, LabelledGenerator, VAEGenerator
from genaug.models import Classifier, build_model, make_config


def tiny_generator(family: str, num_classes: int = 10) -> BaseGenerator:
    """A freshly initialised tiny generator of ``family`` ("labelled" wraps an unconditional VAE)."""
    if family == "labelled":
        return tiny_labelled()
    cfg = make_config(family, {**TINY_MODEL[family], "num_classes": num_classes})
    if family == "vae":
        return VAEGenerator(build_model("vae", cfg))
    return GANGenerator.from_config(family, cfg)


def tiny_labelled() -> LabelledGenerator:
    """An untrained VAE labelled by an untrained classifier whose class logits are standardised
    on the VAE's samples, so every class is predicted often enough for quick tests."""
    base = tiny_generator("vae", 0)
    clf = Classifier(make_config("classifier", TINY_MODEL["classifier"])).eval()
    with torch.no_grad():
        for p in base.vae.decoder.parameters():
            p.mul_(4)  # more varied images from an untrained decoder
        x = base.sample(torch.full((1024,), -1), generator=torch.Generator().manual_seed(99))
        logits = clf(x)
        mean, std = logits.mean(0), logits.std(0)
        head = clf.head[1]
        head.weight.div_(std[:, None])
        head.bias.sub_(mean).div_(std)
    return LabelledGenerator(base, clf)
