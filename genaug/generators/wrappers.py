"""Inference wrappers that turn trained models into :class:`Generator` objects."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from genaug._io import CONFIG_NAME, read_card
from genaug._validation import check_float, check_int, check_int_tuple
from genaug.generators.base import BaseGenerator, SamplingError, check_classes, check_generator
from genaug.generators.gan import GANGenerator
from genaug.generators.vae import VAEGenerator
from genaug.models.classifier import Classifier, ClassifierConfig
from genaug.models.config import ModelConfig
from genaug.registry import build_from_card, register_generator_class

__all__ = [
    "FilterConfig", "FilteredGenerator", "GANGenerator", "LabelledConfig", "LabelledGenerator",
    "MixtureConfig", "MixtureGenerator", "RelabelledConfig", "RelabelledGenerator", "VAEGenerator",
    "match_classes", "same_classes", "with_sampling",
]


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


@register_generator_class("labelled")
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
                raise SamplingError(
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

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> LabelledGenerator:
        return cls(
            build_from_card(card["base"]),
            Classifier(ClassifierConfig.from_dict(card["classifier"])),
            classes=card["classes"],
            config=LabelledConfig.from_dict(card["config"]),
        )


@dataclasses.dataclass
class FilterConfig(ModelConfig):
    """Quality gate: keep a sample only if the judge gives its intended class at least
    ``min_confidence``; rejected samples are redrawn, up to ``max_rounds`` times."""

    min_confidence: float = 0.5
    max_rounds: int = 50

    def __post_init__(self) -> None:
        check_float("min_confidence", self.min_confidence, low=0.0, high=1.0)
        check_int("max_rounds", self.max_rounds, minimum=1)


@register_generator_class("filtered")
class FilteredGenerator(BaseGenerator):
    """A conditional generator whose samples pass a judge classifier's confidence threshold.

    Built with :meth:`on_registered`, the base is a registered or bundled generator named in the
    card instead of copied into it: the saved weights are the judge's only, and loading checks
    that the named generator's weights are still the ones it was saved with.

    Example:
        >>> gen = FilteredGenerator(cvae, judge, config=FilterConfig(min_confidence=0.9))  # doctest: +SKIP
        >>> gen = FilteredGenerator.on_registered("mnist-cddpm", judge, sampling={"guidance": 0.0})  # doctest: +SKIP
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
        self.base_ref: dict[str, Any] | None = None

    @classmethod
    def on_registered(cls, name: str, judge: Classifier, *, config: FilterConfig | None = None,
                      sampling: dict[str, Any] | None = None) -> FilteredGenerator:
        """Gate the registered or bundled generator ``name``, its sampler set by ``sampling`` (fields
        of its config's ``sampling_fields``, e.g. ``{"guidance": 0.0}`` for a diffusion model).
        Saved, the card names ``name`` and the hash of its weights, and holds the judge's weights only.
        """
        sha256 = _registered_card(name)["weights_sha256"]  # also refuses an unknown name
        if sampling is not None and not isinstance(sampling, dict):
            raise ValueError(f"sampling must be a dict of sampler fields, got {type(sampling).__name__}")
        sampling = dict(sampling or {})
        gen = cls(_registered_base(name, sampling), judge, config=config)
        gen.base_ref = {"registered": name, "sampling": sampling, "weights_sha256": sha256}
        return gen

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        if self.base_ref is not None:  # the base's weights live in its own saved folder
            for key in [k for k in state if k.startswith(prefix + "base.")]:
                del state[key]
        return state

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        if self.base_ref is not None:
            state_dict = {**{"base." + k: v for k, v in self.base.state_dict().items()}, **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

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
            raise SamplingError(
                f"{todo.numel()} samples stayed below min_confidence={cfg.min_confidence} after "
                f"{cfg.max_rounds} rounds; unfilled per class: {short}"
            )
        return out

    def card(self) -> dict[str, Any]:
        card = super().card()
        card["base"] = dict(self.base_ref) if self.base_ref is not None else self.base.card()
        card["classifier"] = self.judge.config.to_dict()
        return card

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> FilteredGenerator:
        judge = Classifier(ClassifierConfig.from_dict(card["classifier"]))
        config = FilterConfig.from_dict(card["config"])
        base = card["base"]
        if isinstance(base, dict) and "registered" in base:
            gen = cls.on_registered(base["registered"], judge, config=config, sampling=base.get("sampling"))
            saved, now = base.get("weights_sha256"), gen.base_ref["weights_sha256"]
            if saved != now:
                raise ValueError(f"the base generator {base['registered']!r} has other weights than this gate was "
                                 f"saved with (sha256 {saved} when saved, {now} now)")
            return gen
        return cls(build_from_card(base), judge, config=config)


def _registered_card(name: Any) -> dict[str, Any]:
    from genaug.registry import list_generators, resolve_model_path

    if not isinstance(name, str) or name not in list_generators():
        raise ValueError(f"the base must be a registered or bundled generator name, one of {list_generators()}; "
                         f"got {name!r}")
    return read_card(resolve_model_path(name) / CONFIG_NAME, required=("weights_sha256",))


def _registered_base(name: str, sampling: dict[str, Any]) -> BaseGenerator:
    """The registered generator ``name`` with its sampling fields set from ``sampling``."""
    from genaug.hub import load_generator

    return with_sampling(load_generator(name), sampling, name=repr(name))


def with_sampling(base: BaseGenerator, sampling: dict[str, Any], *, name: str = "the generator") -> BaseGenerator:
    """A copy of ``base`` with the same weights and its sampler's fields set from ``sampling``
    (for a diffusion model ``sample_steps``, ``guidance``, ``guidance_interval``); network
    fields are refused. Empty ``sampling``: ``base`` itself.

    Example:
        >>> fast = with_sampling(genaug.load_generator("mnist-cddpm"), {"sample_steps": 10})  # doctest: +SKIP
    """
    check_generator(base, name="base")
    if not isinstance(sampling, dict):
        raise TypeError(f"sampling must be a dict of sampler fields, got {type(sampling).__name__}")
    if not sampling:
        return base
    allowed = getattr(getattr(base, "config", None), "sampling_fields", ())
    other = sorted(set(sampling) - set(allowed))
    if other:
        raise ValueError(f"sampling may set only {list(allowed)} of {name} (its sampler, not its "
                         f"network); got {other}")
    card = {**base.card(), "config": base.config.replace(**sampling).to_dict()}
    tuned = build_from_card(card)
    tuned.load_state_dict(base.state_dict())
    tuned.provenance = dict(base.provenance)
    return tuned.eval()


@dataclasses.dataclass
class MixtureConfig(ModelConfig):
    """Shares of a mixture's components (normalised to sum to 1 when sampling).

    Args:
        weights: one non-negative share per component, at least one of them positive.
    """

    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.weights = tuple(self.weights)
        if not self.weights:
            raise ValueError("weights must hold one share per component, got none")
        for i, w in enumerate(self.weights):
            check_float(f"weights[{i}]", w, low=0.0)
        if sum(self.weights) <= 0:
            raise ValueError(f"weights must have a positive sum, got {list(self.weights)}")


@register_generator_class("mixture")
class MixtureGenerator(BaseGenerator):
    """Draws each sample from one of several generators of the same classes and image shape.

    Every requested label goes to a component chosen at random with probability
    proportional to its weight; the draw uses the caller's ``torch.Generator``, so the
    same state gives identical output. Generators of different families fail in
    different ways (a GAN drops rare styles, a VAE blurs them), and a classifier trained
    on their mixture can beat one trained on either alone. Saved with
    :meth:`save_pretrained`, a mixture holds every component's weights.

    Example:
        >>> import torch
        >>> from genaug.models import VAE, VAEConfig
        >>> a, b = (VAEGenerator(VAE(VAEConfig(num_classes=10))) for _ in range(2))
        >>> mix = MixtureGenerator([a, b], weights=[3, 1])
        >>> mix.sample(torch.tensor([3, 7])).shape
        torch.Size([2, 1, 28, 28])
    """

    family = "mixture"
    supports_latents = False

    def __init__(
        self,
        components: list[BaseGenerator],
        *,
        weights: list[float] | tuple[float, ...] | None = None,
    ) -> None:
        components = list(components)
        if len(components) < 2:
            raise ValueError(f"a mixture needs at least two generators, got {len(components)}")
        first = components[0]
        for i, comp in enumerate(components[1:], start=1):
            if comp.num_classes != first.num_classes or list(comp.classes) != list(first.classes):
                raise ValueError(
                    f"mixture components must have the same classes; component 0 has {first.classes}, "
                    f"component {i} has {comp.classes}"
                )
            if tuple(comp.image_shape) != tuple(first.image_shape):
                raise ValueError(
                    f"mixture components must make images of one shape; component 0 makes "
                    f"{tuple(first.image_shape)}, component {i} makes {tuple(comp.image_shape)}"
                )
        if weights is None:
            weights = (1.0,) * len(components)
        if len(weights) != len(components):
            raise ValueError(f"expected one weight per component ({len(components)}), got {len(weights)}")
        super().__init__(
            config=MixtureConfig(weights=tuple(weights)),
            classes=first.classes,
            image_shape=first.image_shape,
            latent_dim=0,
        )
        self.components = nn.ModuleList(components)

    def sample(
        self,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        truncation: float = 1.0,
    ) -> torch.Tensor:
        labels = self.check_labels(labels).cpu()
        check_float("truncation", truncation, low=0.0, high=1.0, low_open=True)
        out = torch.empty((labels.numel(), *self.image_shape), dtype=torch.float32, device=self.device)
        if labels.numel() == 0:
            return out
        draw_device = generator.device if generator is not None else torch.device("cpu")
        share = torch.tensor(self.config.weights, dtype=torch.float64, device=draw_device)
        pick = torch.multinomial(share, labels.numel(), replacement=True, generator=generator).cpu()
        for k, comp in enumerate(self.components):
            idx = (pick == k).nonzero().squeeze(1)
            if idx.numel():
                out[idx.to(out.device)] = comp.sample(labels[idx], generator=generator,
                                                      truncation=truncation).to(out.device)
        return out

    def card(self) -> dict[str, Any]:
        card = super().card()
        card["components"] = [
            {**comp.card(), **({"provenance": comp.provenance} if comp.provenance else {})}
            for comp in self.components
        ]
        return card

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> MixtureGenerator:
        comps = card.get("components")
        if not isinstance(comps, list):
            raise ValueError(f"a mixture card needs a list of component cards, got {type(comps).__name__}")
        built = []
        for c in comps:
            comp = build_from_card(c)
            comp.provenance = dict(c.get("provenance", {}))
            built.append(comp)
        return cls(built, weights=MixtureConfig.from_dict(card["config"]).weights)


# The builders' earlier names.
build_labelled = LabelledGenerator.from_card
build_filtered = FilteredGenerator.from_card
build_mixture = MixtureGenerator.from_card


@dataclasses.dataclass
class RelabelledConfig(ModelConfig):
    """Which class of the base generator each label draws.

    Args:
        order: ``order[i]`` is the base generator's label for this generator's class ``i``;
            distinct indices (a permutation, or a subset of the base's classes).
    """

    order: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.order = check_int_tuple("order", self.order, minimum=0)
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"order must not repeat a base class, got {list(self.order)}")


@register_generator_class("relabelled")
class RelabelledGenerator(BaseGenerator):
    """A conditional generator whose classes come in another order, or a subset of them:
    label ``i`` draws the base generator's class ``config.order[i]``, named ``classes[i]``.

    Build it with :func:`match_classes`, which pairs classes by name: a real dataset whose
    labels follow another order (``ImageFolder`` sorts folder names) then gets synthetic
    images of the class each of its labels means.

    Example:
        >>> import torch
        >>> from genaug.models import VAE, VAEConfig
        >>> gen = VAEGenerator(VAE(VAEConfig(num_classes=3)), classes=["cat", "dog", "owl"])
        >>> owl_first = match_classes(gen, ["owl", "cat", "dog"])
        >>> owl_first.config.order
        (2, 0, 1)
    """

    family = "relabelled"

    def __init__(self, base: BaseGenerator, classes: list[str], *, config: RelabelledConfig) -> None:
        if not isinstance(base, BaseGenerator):
            raise TypeError(f"base must be a genaug generator (BaseGenerator), got {type(base).__name__}")
        if base.num_classes == 0:
            raise ValueError("base must be a conditional generator (num_classes >= 1), got num_classes=0")
        bad = [v for v in config.order if v >= base.num_classes]
        if bad:
            raise ValueError(f"order must index the base's {base.num_classes} classes, got {list(config.order)}")
        super().__init__(config=config, classes=check_classes(list(classes), len(config.order)),
                         image_shape=base.image_shape, latent_dim=base.latent_dim)
        self.base = base
        self.supports_latents = base.supports_latents
        self.register_buffer("_order", torch.tensor(config.order, dtype=torch.long), persistent=False)

    def _base_labels(self, labels: torch.Tensor) -> torch.Tensor:
        labels = self.check_labels(labels)
        return self._order.to(labels.device)[labels]

    def sample(
        self,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        truncation: float = 1.0,
    ) -> torch.Tensor:
        return self.base.sample(self._base_labels(labels), generator=generator, truncation=truncation)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.base.decode(z, self._base_labels(labels))

    def card(self) -> dict[str, Any]:
        card = super().card()
        card["base"] = self.base.card()
        return card

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> RelabelledGenerator:
        return cls(build_from_card(card["base"]), card["classes"],
                   config=RelabelledConfig.from_dict(card["config"]))


def _index_names(names: list[str]) -> bool:
    return list(names) == [str(i) for i in range(len(names))]


def same_classes(a: Any, b: Any) -> bool:
    """Whether label ``i`` means the same class under both name lists: the same names in the
    same order, or as many classes with index names (``"0"``, ``"1"``, ...) on one side."""
    a, b = [str(c) for c in a], [str(c) for c in b]
    return a == b or (len(a) == len(b) and (_index_names(a) or _index_names(b)))


def match_classes(model: Any, classes: Any, *, name: str = "the real data") -> Any:
    """``model`` with its labels in the order of ``classes`` (a real dataset's class names).

    - ``classes`` is None, or the generator's own names in its order: ``model`` itself.
    - Every name is one of the generator's: a :class:`RelabelledGenerator` drawing, for label
      ``i``, the generator's class named ``classes[i]`` (another order, or a subset).
    - Index names (``"0"``, ``"1"``, ...) on either side, as many as the generator's
      classes: paired by index (MNIST's ``"0 - zero"`` with a folder named ``"0"``).
    - Otherwise a ``ValueError`` that shows both lists: labels are never silently paired
      with classes of another name.
    """
    check_generator(model, conditional=True)
    if classes is None:
        return model
    classes = [str(c) for c in classes]
    own = [str(c) for c in model.classes]
    if classes == own:
        return model
    if all(c in own for c in classes) and len(set(classes)) == len(classes):
        if not isinstance(model, BaseGenerator):
            raise TypeError(f"{name} lists the generator's classes in another order ({classes} against {own}); "
                            f"reordering needs a genaug generator, got {type(model).__name__}")
        return RelabelledGenerator(model, classes, config=RelabelledConfig(order=tuple(own.index(c) for c in classes)))
    if same_classes(classes, own):
        return model
    missing = [c for c in classes if c not in own]
    raise ValueError(
        f"{name} has classes {classes} but the generator has {own}; "
        f"{missing[:5]} {'is' if len(missing) == 1 else 'are'} not among the generator's classes. "
        "Pass the data's class names in the generator's terms (CLI: --classes), or relabel the data"
    )
