"""The value checks every layer uses (a leaf: imports nothing of robustlab).

Each check returns the value (as the expected type) or raises `error` — the calling layer's own
error class (`AttackError`, `ConfigError`, `DataError`, ...) — with one message format:
``"<field>: expected <what>, got <value>"``. Booleans are never accepted as numbers.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from typing import Any

#: The largest seed robustlab takes: a signed 64-bit integer, which every generator it seeds
#: accepts (torch.manual_seed takes up to 2**64 - 1 and raises a bare "Overflow" above).
SEED_MAX = 2**63 - 1
#: torch threads a process may ask for per core of the machine (more only thrash the caches).
THREADS_PER_CORE = 4


def _bound(value: float) -> str:
    """A bound as the user reads it: an integer in full (2**20 is 1048576, not 1.04858e+06)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds(low: float | None, high: float | None, *, low_open: bool = False,
            high_open: bool = False) -> str:
    if low is not None and high is not None and not low_open:
        return f" in [{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {_bound(low)}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {_bound(high)}")
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
                 low_open: bool = False, high_open: bool = False, allow_none: bool = False,
                 expected: str | None = None,
                 error: type[Exception] = ValueError) -> float | None:
    """`value` as a finite float in [low, high] (`low_open`: > low, `high_open`: < high), or
    None if `allow_none`. `expected` replaces the generated description of what is allowed."""
    if value is None and allow_none:
        return None
    ok = is_real(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = _bounds(low, high, low_open=low_open, high_open=high_open)
        what = expected or f"a finite number{bounds}{' or null' if allow_none else ''}"
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


def check_seed(field: str, value: Any, *, allow_none: bool = False,
               error: type[Exception] = ValueError) -> int | None:
    """`value` as a seed: an integer in [0, SEED_MAX] (or None if `allow_none`)."""
    if value is None and allow_none:
        return None
    if not is_integer(value) or not 0 <= value <= SEED_MAX:
        raise error(f"{field}: expected an integer in [0, 2**63 - 1]"
                    f"{' or null' if allow_none else ''}, got {_show(value)}")
    return int(value)


def max_threads(cores: int | None = None) -> int:
    """The most torch threads a process may ask for: THREADS_PER_CORE per core."""
    return THREADS_PER_CORE * (cores or os.cpu_count() or 1)


def check_threads(field: str, value: Any, *, allow_none: bool = False, cores: int | None = None,
                  error: type[Exception] = ValueError) -> int | None:
    """`value` as a thread count in [1, max_threads(cores)] (or None if `allow_none`); `cores`
    None: this machine's (os.cpu_count())."""
    if value is None and allow_none:
        return None
    cores = cores or os.cpu_count() or 1
    high = max_threads(cores)
    if not is_integer(value) or not 1 <= value <= high:
        raise error(f"{field}: expected an integer in [1, {high}] (at most {THREADS_PER_CORE} "
                    f"per core, {cores} cores here){' or null' if allow_none else ''}, "
                    f"got {_show(value)}")
    return int(value)


def check_l2_budget(field: str, eps: float, image_numel: int, *, where: str,
                    error: type[Exception] = ValueError) -> float:
    """An L2 budget `eps` at most sqrt(C*H*W) (`image_numel` = C*H*W), the diameter of the
    image cube [0, 1]^(C*H*W): no two images of `where` lie further apart, so a larger budget
    is a typo (a Linf number read as L2, pixels in 0-255)."""
    diameter = math.sqrt(image_numel)
    if not is_real(eps) or eps > diameter:
        raise error(f"{field}: an L2 budget of {_show(eps)} exceeds {diameter:.1f}, the largest "
                    f"distance between two images of {where} (sqrt(C*H*W)); expected at most "
                    f"{diameter:.1f}")
    return float(eps)


def check_l1_budget(field: str, eps: float, image_numel: int, *, where: str,
                    error: type[Exception] = ValueError) -> float:
    """An L1 budget `eps` at most C*H*W (`image_numel`), the L1 diameter of the image cube
    [0, 1]^(C*H*W): no two images of `where` lie further apart in L1."""
    if not is_real(eps) or eps > image_numel:
        raise error(f"{field}: an L1 budget of {_show(eps)} exceeds {image_numel}, the largest "
                    f"L1 distance between two images of {where} (C*H*W); expected at most "
                    f"{image_numel}")
    return float(eps)


def check_pixel_count(field: str, value: Any, *, error: type[Exception] = ValueError) -> int:
    """An L0 budget: a whole number of pixels >= 0 (24 or 24.0; not 2.5, -1 or a bool)."""
    if not is_real(value) or value < 0 or not float(value).is_integer():
        raise error(f"{field}: expected a whole number of pixels >= 0 for norm l0 (e.g. 24), "
                    f"got {_show(value)}")
    return int(value)
