"""Pretrained encoders for classifiers: autoencoder, VAE and discriminator backbones.

A backbone maps float images in [0, 1] to a feature vector. It comes from a
folder written by ``genaug train``: the encoder of an autoencoder, VAE or
conditional VAE, or the trunk of a (DC)GAN discriminator (``DIR/discriminator``).

Example:
    >>> backbone = load_backbone("runs/vae")  # doctest: +SKIP
    >>> clf = build_classifier(backbone, 10, freeze="none")  # doctest: +SKIP
    >>> train_classifier(few_labels, model=clf, epochs=20)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from genaug._io import CONFIG_NAME, read_card
from genaug._validation import check_int
from genaug.checkpoint import load_module
from genaug.hub import load_generator
from genaug.models.layers import feature_trunk


class Backbone(nn.Module):
    """Features of images in [0, 1]: ``trunk(x)`` (x mapped to ``input_range``) of size ``out_features``.

    ``label_channels`` joins that many all-zero label channels to the input, for a conditional
    trunk used without a class; models' ``feature_extractor()`` already does that.
    """

    def __init__(self, trunk: nn.Module, out_features: int, *, input_range: str = "sigmoid",
                 label_channels: int = 0) -> None:
        super().__init__()
        self.trunk = feature_trunk(trunk, out_features, num_labels=label_channels)
        self.out_features = out_features
        self.input_range = input_range
        self.label_channels = label_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_range == "tanh":
            x = x * 2 - 1
        return self.trunk(x).flatten(1)


def backbone_from_model(model: nn.Module) -> Backbone:
    """The feature extractor of a model that says what its features are: an autoencoder or
    VAE encoder, a GAN discriminator (or a GAN, through its discriminator), a classifier.

    Any model with ``feature_extractor()``, ``out_features`` and ``input_range`` works, so a
    new family's backbone needs no change here.
    """
    extract = getattr(model, "feature_extractor", None)
    if extract is None or not hasattr(model, "out_features"):
        raise ValueError(
            "expected a model with feature_extractor() and out_features (an autoencoder, a VAE, a GAN "
            f"discriminator or a classifier), got {type(model).__name__}"
        )
    return Backbone(extract(), model.out_features, input_range=getattr(model, "input_range", "sigmoid"))


def load_backbone(path: str | os.PathLike[str]) -> Backbone:
    """A backbone from a training output folder: an autoencoder's or VAE's folder, a GAN's
    ``discriminator`` folder, or a GAN's folder (its ``discriminator`` subfolder is used)."""
    folder = Path(path)
    if (folder / "discriminator" / CONFIG_NAME).is_file():
        folder = folder / "discriminator"
    card = read_card(folder / CONFIG_NAME, required=("family", "config"))
    if "part" in card:  # a model saved on its own: an autoencoder, a discriminator, a classifier
        module, _ = load_module(folder)
    else:  # a generator folder: the network it samples, if it has features (a VAE does)
        module = getattr(load_generator(folder), "network", None)
    if not hasattr(module, "feature_extractor"):
        raise ValueError(
            f"{folder}: expected an autoencoder, VAE or discriminator folder, got family {card['family']!r}"
        )
    return backbone_from_model(module)


def build_classifier(backbone: Backbone, num_classes: int, *, freeze: str | int = "none",
                     dropout: float = 0.2) -> nn.Sequential:
    """``backbone`` followed by a linear head.

    Args:
        freeze: "none" (fine-tune everything), "all" (train the head only) or N (freeze the
            backbone's first N layers that have parameters).
    """
    check_int("num_classes", num_classes, minimum=2)
    layers = [m for m in backbone.trunk.modules() if any(p is not None for p in m.parameters(recurse=False))]
    if freeze == "all":
        n = len(layers)
    elif freeze == "none":
        n = 0
    elif isinstance(freeze, int) and not isinstance(freeze, bool) and 0 <= freeze <= len(layers):
        n = freeze
    else:
        raise ValueError(f"freeze must be 'none', 'all' or an int in [0, {len(layers)}], got {freeze!r}")
    for layer in layers[:n]:
        for p in layer.parameters(recurse=False):
            p.requires_grad_(False)
    return nn.Sequential(backbone, nn.Dropout(dropout), nn.Linear(backbone.out_features, num_classes))


def random_backbone_like(backbone: Backbone) -> Backbone:
    """The same architecture with fresh random weights (the baseline for pretraining)."""
    import copy

    fresh = copy.deepcopy(backbone)
    for m in fresh.modules():
        if hasattr(m, "reset_parameters") and m is not fresh:
            m.reset_parameters()
    return fresh


def few_label_indices(labels: torch.Tensor, per_class: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` randomly chosen items of every class (seeded)."""
    check_int("per_class", per_class, minimum=1)
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in range(int(labels.max()) + 1):
        idx = (labels == c).nonzero().squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class]])
    return torch.cat(picks)
