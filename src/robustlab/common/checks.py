"""The value checks every layer uses (a leaf: imports nothing of robustlab).

Each check returns the value (as the expected type) or raises `error` — the calling layer's own
error class (`AttackError`, `ConfigError`, `DataError`, ...) — with one message format:
``"<field>: expected <what>, got <value>"``. Booleans are never accepted as numbers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any


def _bounds(low: float | None, high: float | None, *, low_open: bool = False) -> str:
    if low is not None and high is not None and not low_open:
        return f" in [{low:g}, {high:g}]"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"<= {high:g}")
    return (" " + " and ".join(parts)) if parts else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_integer(value: Any) -> bool:
    """An int (numpy integers too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A finite real number (int or float, numpy scalars too), not a bool."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


def check_int(field: str, value: Any, low: int | None = None, high: int | None = None, *,
              allow_none: bool = False, error: type[Exception] = ValueError) -> int | None:
    """`value` as an int in [low, high] (either bound optional), or None if `allow_none`."""
    if value is None and allow_none:
        return None
    if not is_integer(value) or (low is not None and value < low) or (
            high is not None and value > high):
        raise error(f"{field}: expected an integer{_bounds(low, high)}"
                    f"{' or null' if allow_none else ''}, got {_show(value)}")
    return int(value)


def check_number(field: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, allow_none: bool = False, expected: str | None = None,
                 error: type[Exception] = ValueError) -> float | None:
    """`value` as a finite float in [low, high] (`low_open`: > low), or None if `allow_none`.
    `expected` replaces the generated description of what is allowed."""
    if value is None and allow_none:
        return None
    ok = is_real(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        what = expected or (f"a finite number{_bounds(low, high, low_open=low_open)}"
                            f"{' or null' if allow_none else ''}")
        raise error(f"{field}: expected {what}, got {_show(value)}")
    return float(value)


def check_bool(field: str, value: Any, *, error: type[Exception] = ValueError) -> bool:
    """`value` if it is True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise error(f"{field}: expected true or false, got {_show(value)}")
    return value


def check_choice(field: str, value: Any, choices: Iterable[str], *,
                 error: type[Exception] = ValueError) -> str:
    """`value` if it is one of `choices`."""
    choices = tuple(choices)
    if value not in choices:
        raise error(f"{field}: expected one of {', '.join(choices)}, got {_show(value)}")
    return value
