"""Option handling shared by the methods: defaults per registered name, and value checks.

A method class lists its options and their defaults in `DEFAULTS`; subclasses registered under
other names override a few defaults (e.g. `mix` is `hybrid` with a fixed eps and alpha).
`resolve_options` rejects unknown keys with TypeError (the loop turns it into a ConfigError
naming `method_options`); the `check_*` helpers raise `ConfigError` naming the option, the value
and what was expected, all before any compute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from robustlab.common.errors import ConfigError


def resolve_options(method: str, defaults: dict[str, Any], options: dict[str, Any]
                    ) -> dict[str, Any]:
    """`defaults` updated with `options`; TypeError listing unknown keys and the known ones."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; "
                        f"known: {', '.join(sorted(defaults))}")
    return {**defaults, **options}


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"method_options.{name}: expected one of {', '.join(choices)}, "
                          f"got {value!r}")
    return value


def check_int(name: str, value: Any, low: int, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"method_options.{name}: expected an integer >= {low}"
                          f"{' or null' if allow_none else ''}, got {value!r}")
    return value


def check_float(name: str, value: Any, low: float, high: float = math.inf, *,
                low_open: bool = False, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}"
                                                           if high != math.inf else "")
        raise ConfigError(f"method_options.{name}: expected a number {bound}"
                          f"{' or null' if allow_none else ''}, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"method_options.{name}: expected true or false, got {value!r}")
    return value
