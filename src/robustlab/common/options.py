"""Options declared once, for every registry kind (attacks, training methods, defenses,
datasets, models).

A component lists its options as typed `Option`s (default, kind, bounds, one line of
documentation) in a class attribute `OPTIONS`. From that one declaration come: the defaults,
the validation at construction (through `common/checks.py`, so every message reads
`"<field>: expected <what>, got <value>"`), the list of unknown options (named from the
declaration, never parsed out of an exception) and the generated options tables of the docs.

`resolve_options(spec, given, owner=..., error=..., prefix=...)` returns every option of
`spec`, the given value or its default, each checked; `prefix` is how the user spells the
option's table (`method_options.`, `pgd.`), so messages name the field as the user wrote it.
Checks that tie two options together (`alpha_max >= alpha_min`) stay in the component.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from robustlab.common import checks
from robustlab.common.errors import ConfigError

KINDS = ("int", "float", "bool", "choice", "str", "table")


@dataclass(frozen=True)
class Option:
    """One option. `kind` is one of `KINDS`; numbers lie in [low, high] (`low_open`: > low);
    `allow_none`: null is allowed too (it means "derived", see `doc`); `also`: literal values
    allowed beside the kind (e.g. alpha = "adaptive")."""

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

    def check(self, field: str, value: Any, *, error: type[Exception] = ConfigError) -> Any:
        """`value` validated (ints and floats as such); else `error` naming `field`."""
        if isinstance(value, str) and value in self.also:
            return value
        if value is None and self.allow_none:
            return None
        if self.kind == "int":  # an int option without a lower bound is a count: >= 0
            high = None if self.high in (None, math.inf) else int(self.high)
            return checks.check_int(field, value, int(self.low or 0), high, error=error)
        if self.kind == "float":
            return checks.check_number(field, value, self.low,
                                       None if self.high in (None, math.inf) else self.high,
                                       low_open=self.low_open, error=error)
        if self.kind == "bool":
            return checks.check_bool(field, value, error=error)
        if self.kind == "choice":
            return checks.check_choice(field, value, self.choices, error=error)
        expected = str if self.kind == "str" else dict
        if not isinstance(value, expected):
            what = "a string" if self.kind == "str" else "a table of options"
            raise error(f"{field}: expected {what}, got {value!r}")
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


def with_defaults(options: dict[str, Option], **defaults: Any) -> dict[str, Option]:
    """`options` with some defaults changed (a variant registered under another name)."""
    unknown = sorted(set(defaults) - set(options))
    if unknown:
        raise ValueError(f"with_defaults: unknown option(s) {', '.join(unknown)}")
    return {k: dataclasses.replace(o, default=defaults[k]) if k in defaults else o
            for k, o in options.items()}


def defaults_of(options: dict[str, Option]) -> dict[str, Any]:
    return {k: o.default for k, o in options.items()}


def unknown_options(spec: dict[str, Option], given: dict[str, Any]) -> list[str]:
    """The keys of `given` that `spec` does not declare, sorted."""
    return sorted(set(given) - set(spec))


def resolve_options(spec: dict[str, Option], given: dict[str, Any], *, owner: str,
                    error: type[Exception], prefix: str = "") -> dict[str, Any]:
    """Every option of `spec`: the given value or the default, each checked (`error` naming
    `prefix + name`); an unknown key is an `error` naming it, `owner` and the known ones."""
    unknown = unknown_options(spec, given)
    if unknown:
        where = f"{prefix.rstrip('.')}: " if prefix else ""
        raise error(f"{where}unknown option(s) {', '.join(unknown)} for {owner}; "
                    f"known: {', '.join(sorted(spec)) or '(none)'}")
    return {k: o.check(prefix + k, given.get(k, o.default), error=error) for k, o in spec.items()}
