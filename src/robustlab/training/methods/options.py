"""Method options declared once: each method lists its options as typed `Option`s (default,
type, bounds, one line of documentation) in `OPTIONS`; validation, the defaults and the options
table of docs/method-options.md (`tests/test_method_options.py` checks it is current) are all
generated from that one declaration.

`resolve_options` rejects unknown keys with TypeError (the loop turns it into a ConfigError
naming `method_options`) and checks every value against its `Option`, raising `ConfigError`
naming the option, the value and what was expected, all before any compute. Checks that tie
two options together (e.g. `alpha_max >= alpha_min`) stay in the method's `__init__`.
Subclasses registered under other names change a few defaults with `with_defaults`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from robustlab.common import checks
from robustlab.common.errors import ConfigError
from robustlab.training.methods.perturb import GENERATORS

KINDS = ("int", "float", "bool", "choice", "str", "table")


@dataclass(frozen=True)
class Option:
    """One method option. `kind` is one of `KINDS`; numbers lie in [low, high] (`low_open`:
    > low); `allow_none`: null is allowed too (it means "derived", see `doc`); `also`: literal
    values allowed beside the kind (e.g. alpha = "adaptive")."""

    default: Any
    kind: str
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    allow_none: bool = False
    choices: tuple[str, ...] = ()
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Option kind: expected one of {', '.join(KINDS)}, got {self.kind!r}")

    def check(self, name: str, value: Any) -> Any:
        """`value` validated (ints and floats as such); else a `ConfigError` naming `name`."""
        if isinstance(value, str) and value in self.also:
            return value
        if self.kind == "int":
            return check_int(name, value, int(self.low or 0), allow_none=self.allow_none)
        if self.kind == "float":
            return check_float(name, value, self.low if self.low is not None else -math.inf,
                               self.high if self.high is not None else math.inf,
                               low_open=self.low_open, allow_none=self.allow_none)
        if self.kind == "bool":
            return check_bool(name, value)
        if self.kind == "choice":
            return check_choice(name, value, self.choices)
        if value is None and self.allow_none:
            return None
        expected = str if self.kind == "str" else dict
        if not isinstance(value, expected):
            raise ConfigError(f"method_options.{name}: expected "
                              f"{'a string' if self.kind == 'str' else 'a table of options'}"
                              f", got {value!r}")
        return value

    def describe(self) -> str:
        """The accepted values in words, e.g. "int >= 1", "float in [0, 1] or null"."""
        if self.kind == "choice":
            text = "one of " + ", ".join(self.choices)
        elif self.kind in ("int", "float"):
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = None if self.high is None or self.high == math.inf else f"{self.high:g}"
            if high is None:
                text = f"{self.kind} {'>' if self.low_open else '>='} {low}"
            else:
                text = f"{self.kind} in {'(' if self.low_open else '['}{low}, {high}]"
        else:
            text = {"bool": "true or false", "str": "string", "table": "table"}[self.kind]
        extras = [f'"{a}"' for a in self.also] + (["null"] if self.allow_none else [])
        return text + "".join(f" or {e}" for e in extras)


def generator_options(k: int) -> dict[str, Option]:
    """The options of the training-time perturbation (`methods/perturb.py`), shared by pgd-at
    and the hybrid family; `k` is the default number of PGD steps."""
    return {
        "generator": Option("pgd", "choice", "how the adversarial examples are made",
                            choices=GENERATORS),
        "k": Option(k, "int", "PGD steps (generator pgd)", low=1),
        "step_size": Option(None, "float", "step (null: 2.5 eps / k for pgd, 1.25 eps for "
                            "fgsm-rs, eps for n-fgsm)", low=0.0, low_open=True, allow_none=True),
        "noise_mult": Option(2.0, "float", "n-fgsm noise, in multiples of eps", low=0.0),
    }


def guard_options() -> dict[str, Option]:
    """The validation probe and catastrophic-overfitting guard (`methods/validation.py`)."""
    return {
        "val_samples": Option(1000, "int", "validation images the probe attacks", low=1),
        "val_steps": Option(10, "int", "PGD steps of the validation probe", low=1),
        "val_batch": Option(500, "int", "batch size of the validation probe", low=1),
        "co_drop": Option(0.3, "float", "guard: drop of validation PGD accuracy from its best "
                          "that flags catastrophic overfitting", low=0.0, high=1.0),
        "co_floor": Option(0.05, "float", "guard: validation PGD accuracy below this flags it",
                           low=0.0, high=1.0),
        "co_fgsm_high": Option(0.5, "float", "guard: ... while FGSM accuracy stays above this",
                               low=0.0, high=1.0),
        "co_gap": Option(0.15, "float", "guard: validation FGSM accuracy above PGD accuracy by "
                         "more than this (at the target eps) flags it", low=0.0, high=1.0),
    }


def with_defaults(options: dict[str, Option], **defaults: Any) -> dict[str, Option]:
    """`options` with some defaults changed (a variant registered under another name)."""
    unknown = sorted(set(defaults) - set(options))
    if unknown:
        raise ValueError(f"with_defaults: unknown option(s) {', '.join(unknown)}")
    return {k: dataclasses.replace(o, default=defaults[k]) if k in defaults else o
            for k, o in options.items()}


def defaults_of(options: dict[str, Option]) -> dict[str, Any]:
    return {k: o.default for k, o in options.items()}


def resolve_options(method: str, spec: dict[str, Option], options: dict[str, Any]
                    ) -> dict[str, Any]:
    """Every option of `spec`: the given value or the default, each checked; TypeError listing
    unknown keys and the known ones."""
    unknown = sorted(set(options) - set(spec))
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)} for method {method!r}; "
                        f"known: {', '.join(sorted(spec))}")
    return {k: o.check(k, options.get(k, o.default)) for k, o in spec.items()}


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    return checks.check_choice(f"method_options.{name}", value, choices, error=ConfigError)


def check_int(name: str, value: Any, low: int, *, allow_none: bool = False) -> int | None:
    return checks.check_int(f"method_options.{name}", value, low, allow_none=allow_none,
                            error=ConfigError)


def check_float(name: str, value: Any, low: float, high: float = math.inf, *,
                low_open: bool = False, allow_none: bool = False) -> float | None:
    return checks.check_number(f"method_options.{name}", value, low,
                               None if high == math.inf else high, low_open=low_open,
                               allow_none=allow_none, error=ConfigError)


def check_bool(name: str, value: Any) -> bool:
    return checks.check_bool(f"method_options.{name}", value, error=ConfigError)
