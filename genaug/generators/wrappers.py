"""Inference wrappers that turn trained models into :class:`Generator` objects."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from genaug._validation import check_float, check_int
from genaug.generators.base import BaseGenerator, check_classes
from genaug.models import Classifier, ClassifierConfig, get_model_spec
from genaug.models.autoencoder import VAE
from genaug.models.config import ModelConfig


class VAEGenerator(BaseGenerator):
    """Samples a (conditional) VAE's decoder: ``sigmoid(decoder(z, label))`` with z ~ N(0, I).

    Keeps the whole VAE so its encoder stays available (e.g. for pretraining).

    Example:
        >>> import torch
        >>> from genaug.models import VAE, VAEConfig
        >>> gen = VAEGenerator(VAE(VAEConfig(num_classes=10)))
        >>> gen.sample(torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])
    """

    family = "vae"

    def __init__(self, vae: VAE, *, classes: list[str] | None = None) -> None:
        cfg = vae.config
        super().__init__(
            config=cfg,
            classes=check_classes(classes, cfg.num_classes),
            image_shape=cfg.image_shape,
            latent_dim=cfg.latent_dim,
        )
        self.vae = vae

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.vae.decode_logits(z, labels if self.num_classes else None))


class GANGenerator(BaseGenerator):
    """Samples a GAN generator (MLP GAN, DCGAN or BEGAN) and maps tanh output to [0, 1]."""

    def __init__(
        self,
        net: nn.Module,
        *,
        family: str,
        config: ModelConfig,
        classes: list[str] | None = None,
    ) -> None:
        super().__init__(
            config=config,
            classes=check_classes(classes, config.num_classes),
            image_shape=config.image_shape,
            latent_dim=config.latent_dim,
        )
        self.family = family
        self.net = net

    @classmethod
    def from_config(
        cls, family: str, config: ModelConfig, *, classes: list[str] | None = None
    ) -> GANGenerator:
        spec = get_model_spec(family)
        return cls(spec.model_cls.build_generator(config), family=family, config=config, classes=classes)

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.net(z, labels if self.num_classes else None)
        return (x + 1.0) * 0.5


@dataclasses.dataclass
class LabelledConfig(ModelConfig):
    """How an unconditional generator is labelled by a classifier.

    Args:
        min_confidence: keep a sample only if the classifier's probability for
            its predicted class is at least this.
        batch_size: samples drawn per round.
        max_rounds: rounds before giving up on a class that the base rarely makes.
    """

    min_confidence: float = 0.0
    batch_size: int = 256
    max_rounds: int = 200

    def __post_init__(self) -> None:
        check_float("min_confidence", self.min_confidence, low=0.0, high=1.0)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("max_rounds", self.max_rounds, minimum=1)


def _check_image_shape(name: str, classifier: Classifier, base: BaseGenerator) -> None:
    if tuple(classifier.config.image_shape) != tuple(base.image_shape):
        raise ValueError(
            f"{name} expects images of shape {tuple(classifier.config.image_shape)}, "
            f"but the base generator makes {tuple(base.image_shape)}"
        )


class LabelledGenerator(BaseGenerator):
    """Makes an unconditional generator class-labelled with a classifier.

    Samples are drawn from ``base`` in rounds, labelled by ``classifier``'s
    prediction, filtered by ``min_confidence`` and handed out per requested
    class. Deterministic for a given ``torch.Generator`` state.

    Example:
        >>> import torch
        >>> from genaug.models import VAE, VAEConfig, Classifier, ClassifierConfig
        >>> base = VAEGenerator(VAE(VAEConfig()))
        >>> gen = LabelledGenerator(base, Classifier(ClassifierConfig(num_classes=10)))
        >>> gen.num_classes
        10
    """

    family = "labelled"
    supports_latents = False

    def __init__(
        self,
        base: BaseGenerator,
        classifier: Classifier,
        *,
        classes: list[str] | None = None,
        config: LabelledConfig | None = None,
    ) -> None:
        if base.num_classes != 0:
            raise ValueError(
                f"base must be an unconditional generator (num_classes=0), got num_classes="
                f"{base.num_classes}"
            )
        _check_image_shape("classifier", classifier, base)
        super().__init__(
            config=config or LabelledConfig(),
            classes=check_classes(classes, classifier.config.num_classes),
            image_shape=base.image_shape,
            latent_dim=base.latent_dim,
        )
        self.base = base
        self.classifier = classifier

    def sample(
        self,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        truncation: float = 1.0,
    ) -> torch.Tensor:
        labels = self.check_labels(labels).cpu()
        need = torch.bincount(labels, minlength=self.num_classes)
        pools: list[list[torch.Tensor]] = [[] for _ in range(self.num_classes)]
        have = torch.zeros(self.num_classes, dtype=torch.long)
        cfg: LabelledConfig = self.config
        self.classifier.eval()
        for _ in range(cfg.max_rounds):
            if bool((have >= need).all()):
                break
            unl = torch.full((cfg.batch_size,), -1, dtype=torch.long)
            x = self.base.sample(unl, generator=generator, truncation=truncation)
            with torch.no_grad():
                prob = torch.softmax(self.classifier(x.to(self.device)).float(), dim=1).cpu()
            conf, pred = prob.max(dim=1)
            keep = conf >= cfg.min_confidence
            x = x.cpu()
            for c in range(self.num_classes):
                if have[c] < need[c]:
                    got = x[keep & (pred == c)]
                    pools[c].append(got)
                    have[c] += got.shape[0]
        else:
            if not bool((have >= need).all()):
                short = {
                    self.classes[c]: (int(have[c]), int(need[c]))
                    for c in range(self.num_classes)
                    if have[c] < need[c]
                }
                raise RuntimeError(
                    f"could not find enough samples after {cfg.max_rounds} rounds of "
                    f"{cfg.batch_size} at min_confidence={cfg.min_confidence}; "
                    f"(found, needed) per class: {short}"
                )
        out = torch.empty((labels.numel(), *self.image_shape), dtype=torch.float32)
        for c in range(self.num_classes):
            idx = (labels == c).nonzero().squeeze(1)
            if idx.numel():
                out[idx] = torch.cat(pools[c])[: idx.numel()]
        return out.to(self.device)

    def card(self) -> dict[str, Any]:
        card = super().card()
        card["base"] = self.base.card()
        card["classifier"] = self.classifier.config.to_dict()
        return card


@dataclasses.dataclass
class FilterConfig(ModelConfig):
    """Quality gate: keep a sample only if the judge gives its intended class at least
    ``min_confidence``; rejected samples are redrawn, up to ``max_rounds`` times."""

    min_confidence: float = 0.5
    max_rounds: int = 50

    def __post_init__(self) -> None:
        check_float("min_confidence", self.min_confidence, low=0.0, high=1.0)
        check_int("max_rounds", self.max_rounds, minimum=1)


class FilteredGenerator(BaseGenerator):
    """A conditional generator whose samples pass a judge classifier's confidence threshold.

    Example:
        >>> gen = FilteredGenerator(cvae, judge, config=FilterConfig(min_confidence=0.9))  # doctest: +SKIP
    """

    family = "filtered"
    supports_latents = False

    def __init__(self, base: BaseGenerator, judge: Classifier, *, config: FilterConfig | None = None) -> None:
        if base.num_classes == 0:
            raise ValueError("base must be a conditional generator (num_classes >= 1), got num_classes=0")
        if judge.config.num_classes != base.num_classes:
            raise ValueError(
                f"judge must have {base.num_classes} classes like the generator, got {judge.config.num_classes}"
            )
        _check_image_shape("judge", judge, base)
        super().__init__(config=config or FilterConfig(), classes=base.classes,
                         image_shape=base.image_shape, latent_dim=base.latent_dim)
        self.base = base
        self.judge = judge

    def sample(
        self,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        truncation: float = 1.0,
    ) -> torch.Tensor:
        labels = self.check_labels(labels)
        cfg: FilterConfig = self.config
        out = torch.empty((labels.numel(), *self.image_shape), dtype=torch.float32, device=self.device)
        todo = torch.arange(labels.numel())
        self.judge.eval()
        for _ in range(cfg.max_rounds):
            if todo.numel() == 0:
                break
            y = labels[todo]
            x = self.base.sample(y, generator=generator, truncation=truncation)
            with torch.no_grad():
                prob = torch.softmax(self.judge(x).float(), dim=1)
            conf = prob.gather(1, y.to(prob.device)[:, None]).squeeze(1).cpu()
            ok = conf >= cfg.min_confidence
            out[todo[ok]] = x[ok.to(x.device)]
            todo = todo[~ok]
        if todo.numel():
            left = torch.bincount(labels[todo], minlength=self.num_classes)
            short = {self.classes[c]: int(left[c]) for c in range(self.num_classes) if left[c]}
            raise RuntimeError(
                f"{todo.numel()} samples stayed below min_confidence={cfg.min_confidence} after "
                f"{cfg.max_rounds} rounds; unfilled per class: {short}"
            )
        return out

    def card(self) -> dict[str, Any]:
        card = super().card()
        card["base"] = self.base.card()
        card["classifier"] = self.judge.config.to_dict()
        return card


def build_filtered(card: dict[str, Any]) -> FilteredGenerator:
    from genaug.registry import build_from_card

    return FilteredGenerator(
        build_from_card(card["base"]),
        Classifier(ClassifierConfig.from_dict(card["classifier"])),
        config=FilterConfig.from_dict(card["config"]),
    )


def build_labelled(card: dict[str, Any]) -> LabelledGenerator:
    from genaug.registry import build_from_card

    return LabelledGenerator(
        build_from_card(card["base"]),
        Classifier(ClassifierConfig.from_dict(card["classifier"])),
        classes=card["classes"],
        config=LabelledConfig.from_dict(card["config"]),
    )
