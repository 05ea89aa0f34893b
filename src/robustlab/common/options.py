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
A class hierarchy declares options per class: `merged_options(cls)` is a class's declaration
extended by its bases' (along the MRO), and `options_signature` the keyword-only signature
that shows them to `help()` / `inspect.signature`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from robustlab.common import checks
from robustlab.common.errors import ConfigError

KINDS = ("int", "float", "bool", "choice", "str", "table", "size", "names", "amount", "ints")


@dataclass(frozen=True)
class Option:
    """One option. `kind` is one of `KINDS`; numbers lie in [low, high] (`low_open`: > low,
    `high_open`: < high); `allow_none`: null is allowed too (it means "derived", see `doc`);
    `also`: literal values allowed beside the kind (e.g. alpha = "adaptive"). Kinds beyond the
    scalars: "size" an int >= low or a (height, width) pair of them (an image size), "names" a
    list of strings, "amount" an int count >= 0 or a float fraction in [0, 1) (a split size;
    its upper bound depends on the data, so the component checks it), "ints" a list of
    `length` integers each >= low (a [row, col] corner). `allow_inf`: a float option also
    takes infinity (an uncapped margin)."""

    default: Any
    kind: str
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_none: bool = False
    choices: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    allow_inf: bool = False
    length: int | None = None

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
        if self.kind == "float" and self.allow_inf and value == math.inf and not isinstance(
                value, bool | str):
            return math.inf
        if self.kind == "float":
            return checks.check_number(field, value, self.low,
                                       None if self.high in (None, math.inf) else self.high,
                                       low_open=self.low_open, high_open=self.high_open,
                                       expected=("a number " + self.describe()[len("float "):]
                                                 if self.allow_inf else None), error=error)
        if self.kind in ("size", "names", "amount", "ints"):
            return _check_composite(self, field, value, error)
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
            show = (lambda v: str(int(v))) if self.kind == "int" else (lambda v: f"{v:g}")
            low = "-inf" if self.low is None else show(self.low)
            high = None if self.high is None or self.high == math.inf else show(self.high)
            if high is None:
                text = f"{self.kind} {'>' if self.low_open else '>='} {low}"
            else:
                text = (f"{self.kind} in {'(' if self.low_open else '['}{low}, {high}"
                        f"{')' if self.high_open else ']'}")
        else:
            text = {"bool": "true or false", "str": "string", "table": "table",
                    "size": f"int >= {self.low or 1:g} or [height, width]",
                    "names": "list of strings",
                    "amount": "int count >= 0 or fraction in [0, 1)",
                    "ints": f"list of {self.length or ''} ints >= {self.low or 0:g}".replace(
                        "  ", " ")}[self.kind]
        extras = ([f'"{a}"' for a in self.also] + (["inf"] if self.allow_inf else [])
                  + (["null"] if self.allow_none else []))
        return text + "".join(f" or {e}" for e in extras)


def _check_composite(option: Option, field: str, value: Any, error: type[Exception]) -> Any:
    """A "size", "names", "amount" or "ints" value (see `Option`), returned as given (a size
    pair and a list of ints as a tuple); else `error` naming `field`."""
    if option.kind == "size":
        low = int(option.low or 1)
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return tuple(checks.check_int(f"{field}[{i}]", v, low, error=error)
                         for i, v in enumerate(value))
        if checks.is_integer(value) and value >= low:
            return int(value)
        raise error(f"{field}: expected an integer >= {low} or (H, W), a pair of "
                    f"them, got {value!r:.60}")
    if option.kind == "ints":
        if isinstance(value, (list, tuple)) and len(value) == (option.length or len(value)):
            return tuple(checks.check_int(f"{field}[{i}]", v, int(option.low or 0), error=error)
                         for i, v in enumerate(value))
        raise error(f"{field}: expected a {option.describe()}, got {value!r:.60}")
    if option.kind == "names":
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return value
        raise error(f"{field}: expected a list of names, got {value!r:.60}")
    if checks.is_integer(value) and value >= 0:  # "amount"
        return int(value)
    return checks.check_number(field, value, 0.0, 1.0, high_open=True, error=error,
                               expected="an integer count >= 0 or a fraction in [0, 1)")


def declare(options: dict[str, Option]) -> Any:
    """Decorator: a function-style factory (datasets, models) declares its options, as a class
    does with its `OPTIONS` attribute; the registry's `create`/`load` resolves them."""
    def attach(factory: Any) -> Any:
        factory.OPTIONS = options
        return factory
    return attach


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
        where = f"{prefix.rstrip('. ')}: " if prefix else ""
        raise error(f"{where}unknown option(s) {', '.join(unknown)} for {owner}; "
                    f"known: {', '.join(sorted(spec)) or '(none)'}")
    return {k: o.check(prefix + k, given.get(k, o.default), error=error) for k, o in spec.items()}


def merged_options(cls: type, attr: str = "OPTIONS", *, drop: Iterable[str] = ()
                   ) -> dict[str, Option]:
    """The options `cls` declares in its attribute `attr`, extended by those its bases declare
    (along the MRO: a subclass's entry replaces its base's in the base's place, a new one comes
    after its bases'), less the names in `drop`."""
    merged: dict[str, Option] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get(attr) or {})
    dropped = set(drop)
    return {k: o for k, o in merged.items() if k not in dropped}


_ANNOTATIONS = {"int": "int", "float": "float", "bool": "bool", "choice": "str", "str": "str",
                "table": "dict", "size": "int | tuple[int, int]", "names": "list[str]",
                "amount": "int | float", "ints": "list[int]"}


def options_signature(options: dict[str, Option], *, before: Iterable[inspect.Parameter] = (),
                      var_keyword: str | None = None) -> inspect.Signature:
    """A keyword-only signature listing `options` with their defaults (after the parameters
    `before`; `**var_keyword` last if given), e.g. for a class's `__signature__`."""
    params = list(before) + [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=o.default,
                          annotation=_ANNOTATIONS.get(o.kind, "object")
                          + (" | None" if o.allow_none else ""))
        for k, o in options.items()]
    if var_keyword is not None:
        params.append(inspect.Parameter(var_keyword, inspect.Parameter.VAR_KEYWORD))
    return inspect.Signature(params)
