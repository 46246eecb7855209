"""Base class for model configs: a dataclass of primitives that round-trips through JSON."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="ModelConfig")


@dataclasses.dataclass
class ModelConfig:
    """Dataclass of primitives; subclasses validate in ``__post_init__``.

    ``sampling_fields`` names the fields that set how a trained network is sampled (steps,
    guidance) rather than the network itself: weights of one config fit a network of another
    that differs only in them.
    """

    sampling_fields: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__} expects a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__} got unknown field(s) {unknown}; allowed fields are {sorted(names)}"
            )
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in data.items():
            if isinstance(v, list) and "tuple" in str(hints.get(k, "")):
                v = tuple(v)
            kwargs[k] = v
        return cls(**kwargs)

    def architecture(self) -> dict[str, Any]:
        """:meth:`to_dict` without the ``sampling_fields``: what a network's weights depend on."""
        return {k: v for k, v in self.to_dict().items() if k not in self.sampling_fields}

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)
