from __future__ import annotations

import torch
from conftest import TINY_MODEL

from genaug.generators import (
    BaseGenerator,
    DiffusionGenerator,
    FilterConfig,
    FilteredGenerator,
    GANGenerator,
    LabelledGenerator,
    MixtureGenerator,
    VAEGenerator,
)
from genaug.generators.wrappers import match_classes
from genaug.models import Classifier, build_model, make_config


def tiny_generator(family: str, num_classes: int = 10) -> BaseGenerator:
    """A freshly initialised tiny generator of ``family`` ("labelled" wraps an unconditional VAE)."""
    if family == "labelled":
        return tiny_labelled()
    if family == "mixture":
        return MixtureGenerator([tiny_generator("vae", num_classes), tiny_generator("dcgan", num_classes)],
                                weights=[2, 1])
    if family == "relabelled":  # the classes in reverse order, matched by name
        base = tiny_generator("vae", num_classes or 10)
        return match_classes(base, base.classes[::-1])
    if family == "filtered":
        judge = Classifier(make_config("classifier", TINY_MODEL["classifier"]))
        return FilteredGenerator(tiny_generator("vae", num_classes or 10), judge,
                                 config=FilterConfig(min_confidence=0.05))
    if family == "latent-prior":  # a per-class 2-component mixture fitted to random images
        from genaug.generators import fit_latent_prior

        base = tiny_generator("vae", num_classes or 10)
        g = torch.Generator().manual_seed(0)
        labels = torch.arange(20 * base.num_classes) % base.num_classes
        return fit_latent_prior(base, torch.rand(len(labels), *base.image_shape, generator=g), labels,
                                components=2, iterations=5)
    cfg = make_config(family, {**TINY_MODEL[family], "num_classes": num_classes})
    if family == "vae":
        return VAEGenerator(build_model("vae", cfg))
    if family == "diffusion":
        return DiffusionGenerator(build_model("diffusion", cfg))
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


class ClassShade(BaseGenerator):
    """A test generator whose class-c images are the constant c / 10 plus a little noise."""

    family = "test-class-shade"

    def __init__(self) -> None:
        from genaug.models import VAEConfig

        super().__init__(config=VAEConfig(num_classes=10), classes=[str(i) for i in range(10)],
                         image_shape=(1, 28, 28), latent_dim=4)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def _decode(self, z, labels):
        shade = (labels.float() / 10)[:, None, None, None].expand(-1, 1, 28, 28)
        return shade + 0.01 * z[:, :1, None, None].tanh()


def h5_contents(path):
    """The images and labels of an HDF5 export, read at once."""
    import h5py

    with h5py.File(path, "r") as f:
        return f["images"][()], f["labels"][()]
