"""Argument checks shared by configs, datasets and transforms.

Every check raises ``ValueError`` naming the field, what was expected and what
was received, so a bad argument fails early with a message a user can act on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_int(name: str, value: Any, *, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    lo_ok = low is None or (value > low if low_open else value >= low)
    hi_ok = high is None or (value < high if high_open else value <= high)
    if not (lo_ok and hi_ok):
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be in {lb}{lo}, {hi}{hb}, got {value}")


def check_probability(name: str, value: Any) -> None:
    check_float(name, value, low=0.0, high=1.0)


def check_image_shape(name: str, value: Any, *, multiple_of: int = 4) -> tuple[int, int, int]:
    if (
        not isinstance(value, Sequence)
        or len(value) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(f"{name} must be three positive ints (C, H, W), got {value!r}")
    c, h, w = value
    if h % multiple_of or w % multiple_of:
        stages = multiple_of.bit_length() - 1
        what = f"{stages} stride-2 stage{'s' if stages != 1 else ''}" if multiple_of == 2**stages else "the layers"
        raise ValueError(
            f"{name} must have H and W divisible by {multiple_of} ({what}), got {tuple(value)}; "
            f"{resize_hint(h, w, multiple_of)}"
        )
    return (c, h, w)


def resize_hint(h: int, w: int, multiple_of: int, minimum: int = 1) -> str:
    """How to make (h, w) a size the model takes: the nearest larger multiples, on the CLI and in Python."""
    th, tw = (max(minimum, -(-v // multiple_of) * multiple_of) for v in (h, w))
    return (f"resize the images, e.g. to {th}x{tw} (CLI: --resize {th},{tw}; Python: "
            f"torchvision.transforms.v2.Resize(({th}, {tw})))")


def check_int_tuple(name: str, value: Any, *, minimum: int = 1) -> tuple[int, ...]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) == 0
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    ):
        raise ValueError(f"{name} must be a non-empty sequence of ints >= {minimum}, got {value!r}")
    return tuple(value)


def check_interval(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """A (start, end) pair of numbers with low <= start <= end <= high."""
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        or not low <= value[0] <= value[1] <= high
    ):
        raise ValueError(f"{name} must be two numbers (start, end) with {low} <= start <= end <= {high}, "
                         f"got {value!r}")
    return (float(value[0]), float(value[1]))
