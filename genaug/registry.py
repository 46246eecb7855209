"""Registries: name -> builder tables that refuse duplicate names (a leaf: imports no family).

Four tables, each filled where its entries are defined:

- **models** (:func:`register_model`): ``nn.Module`` families built from one config dataclass,
  e.g. ``"dcgan"``. A model that a generator wraps names that generator class.
- **generator classes** (:func:`register_generator_class`, :func:`register_family`): how a
  saved generator card of a given ``"family"`` is rebuilt (``"vae"``, ``"gan"``, ``"mixture"``).
- **recipes** (:func:`register_recipe`): training objectives (``"vae"``, ``"gan"``, ``"began"``).
- **presets** (:func:`register_preset`): what ``genaug train NAME`` means: a model, a recipe
  and their defaults (``"cdcgan"`` = model ``"dcgan"`` + recipe ``"gan"``, conditional).

Named generators (:func:`register_generator`) map a name to a saved folder; the bundled
ones register themselves by folder name.

Example:
    >>> from genaug.registry import list_models
    >>> "dcgan" in list_models()
    True
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A name -> entry table (read like a dict) whose names can be registered once."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def get_entry(self, name: str) -> T:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; known: {sorted(self._entries)}") from None

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A registered model family: its config dataclass, its module class and, for models
    that a generator samples, the name of that generator class."""

    name: str
    config_cls: type
    model_cls: type
    generator: str | None = None


MODELS: Registry[ModelSpec] = Registry("model family")


def register_model(name: str, config_cls: type | None = None, model_cls: type | None = None, *,
                   config: type | None = None, generator: str | None = None) -> Any:
    """Class decorator: register an ``nn.Module`` family built as ``cls(config_cls(...))``.

    Args:
        name: the family name (stored in cards as ``"family"``).
        config: its config dataclass (a :class:`~genaug.models.ModelConfig`).
        generator: the generator class (see :func:`register_generator_class`) that samples
            this model, e.g. ``"gan"`` for models with a ``build_generator(config)``; ``None``
            for encoders and classifiers.

    Example:
        >>> @register_model("toy", config=ToyConfig, generator="gan")  # doctest: +SKIP
        ... class Toy(nn.Module): ...
    """

    if model_cls is not None:  # the earlier call form register_model(name, config_cls, model_cls)
        warnings.warn("register_model(name, config_cls, model_cls) is deprecated; decorate the model "
                      "class with @register_model(name, config=config_cls)", DeprecationWarning, stacklevel=2)
        MODELS.register(name, ModelSpec(name, config_cls, model_cls, generator))
        return model_cls
    config = config if config is not None else config_cls
    if config is None:
        raise TypeError("register_model needs config=, the model's config dataclass")

    def wrap(cls: type) -> type:
        MODELS.register(name, ModelSpec(name, config, cls, generator))
        return cls

    return wrap


def list_models() -> list[str]:
    return sorted(MODELS)


def get_model_spec(name: str) -> ModelSpec:
    return MODELS.get_entry(name)


def make_config(name: str, config: Any = None) -> Any:
    """The config object of model family ``name`` from a config, a dict of fields, or None (defaults)."""
    spec = get_model_spec(name)
    if config is None:
        return spec.config_cls()
    if isinstance(config, dict):
        return spec.config_cls.from_dict(config)
    if not isinstance(config, spec.config_cls):
        raise ValueError(
            f"model family {name!r} expects a {spec.config_cls.__name__}, got {type(config).__name__}"
        )
    return config


def build_model(name: str, config: Any = None) -> Any:
    """Build the model family ``name`` from a config object or dict (defaults if None)."""
    return get_model_spec(name).model_cls(make_config(name, config))


# ---------------------------------------------------------------- generator classes

GENERATOR_CLASSES: Registry[Callable[[dict[str, Any]], Any]] = Registry("generator family")


def register_generator_class(name: str) -> Callable[[type], type]:
    """Class decorator: cards of family ``name`` (and of models naming it) rebuild with ``cls.from_card``."""

    def wrap(cls: type) -> type:
        GENERATOR_CLASSES.register(name, cls.from_card)
        return cls

    return wrap


def register_family(name: str, build: Callable[[dict[str, Any]], Any]) -> None:
    """Register how to build a generator (fresh weights) from a card whose ``"family"`` is ``name``."""
    spec = MODELS.get(name)
    if spec is not None and spec.generator is not None:
        raise ValueError(f"generator family {name!r} is already registered (model {name!r})")
    GENERATOR_CLASSES.register(name, build)


def list_families() -> list[str]:
    """Card families that :func:`genaug.load_generator` can rebuild."""
    from_models = {name for name, spec in MODELS.items() if spec.generator is not None}
    return sorted(from_models | set(GENERATOR_CLASSES))


def build_from_card(card: dict[str, Any]) -> Any:
    """A generator with fresh weights, built from a card's ``family`` and ``config``."""
    family = card.get("family")
    spec = MODELS.get(family) if isinstance(family, str) else None
    if spec is not None and spec.generator is not None:
        return GENERATOR_CLASSES.get_entry(spec.generator)(card)
    if family not in GENERATOR_CLASSES:
        raise ValueError(f"unknown generator family {family!r}; known families: {list_families()}")
    return GENERATOR_CLASSES[family](card)


# ---------------------------------------------------------------- recipes and presets

RECIPES: Registry[type] = Registry("training recipe")


def register_recipe(name: str) -> Callable[[type], type]:
    """Class decorator: register a training recipe (a :class:`~genaug.train.recipes.Recipe`)."""

    def wrap(cls: type) -> type:
        cls.name = name
        RECIPES.register(name, cls)
        return cls

    return wrap


def list_recipes() -> list[str]:
    return sorted(RECIPES)


@dataclass(frozen=True)
class Preset:
    """What ``genaug train NAME`` means: a model family, a recipe and their defaults.

    Args:
        model: a registered model family.
        recipe: a registered recipe.
        conditional: whether the model gets the class labels.
        model_defaults: fields of the model config (the user's ``model=`` overrides them).
        recipe_defaults: fields of the recipe config (the user's fields override them).
    """

    model: str
    recipe: str
    conditional: bool
    model_defaults: Mapping[str, Any] = field(default_factory=dict)
    recipe_defaults: Mapping[str, Any] = field(default_factory=dict)

    @property
    def objective(self) -> str:
        """The recipe's name (the name this field had before recipes)."""
        return self.recipe

    @property
    def train_defaults(self) -> dict[str, Any]:
        return dict(self.recipe_defaults)


PRESETS: Registry[Preset] = Registry("training preset")


def register_preset(name: str, preset: Preset) -> Preset:
    """Register a training preset under ``name`` (what ``genaug train NAME`` takes)."""
    return PRESETS.register(name, preset)


def list_presets() -> list[str]:
    return sorted(PRESETS)


# ---------------------------------------------------------------- named generators

BUNDLED_DIR = Path(__file__).parent / "weights"
NAMED: Registry[Path] = Registry("named generator")


def register_generator(name: str, path: str | os.PathLike[str]) -> None:
    """Make the saved generator at ``path`` loadable by ``name``.

    Example:
        >>> register_generator("my-cvae", "runs/cvae")  # doctest: +SKIP
        >>> genaug.load_generator("my-cvae")  # doctest: +SKIP
    """
    if name in NAMED:
        raise ValueError(f"a generator named {name!r} is already registered (at {NAMED[name]})")
    NAMED.register(name, Path(path))


def list_generators() -> list[str]:
    """Names accepted by :func:`genaug.load_generator` (bundled and registered generators)."""
    return sorted(NAMED)


def bundled_path(name: str) -> Path:
    """Folder of a model bundled with genaug (e.g. ``"mnist-cdcgan"`` or the judge ``"mnist-judge"``)."""
    folder = BUNDLED_DIR / name
    if not (folder / "config.json").is_file():
        names = sorted(p.parent.name for p in BUNDLED_DIR.glob("*/config.json"))
        raise FileNotFoundError(f"no bundled model named {name!r}; bundled: {names}")
    return folder


def resolve_model_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A registered or bundled name's folder, else the path itself."""
    key = os.fspath(name_or_path)
    if key in NAMED:
        return NAMED[key]
    if (BUNDLED_DIR / key / "config.json").is_file() and not Path(key).exists():
        return BUNDLED_DIR / key
    return Path(key)


def _register_bundled() -> None:
    """Bundled generators (cards without a ``part``) become loadable by their folder name."""
    for config in sorted(BUNDLED_DIR.glob("*/config.json")):
        if "part" not in json.loads(config.read_text()):
            register_generator(config.parent.name, config.parent)


_register_bundled()
