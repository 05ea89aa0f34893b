"""docs/attack-options.md, generated from every registered attack's `OPTIONS` declaration and
docstring (`make docs`; a test checks the committed file is current, so a renamed or
re-defaulted option cannot leave the docs behind)."""

from __future__ import annotations

import inspect
from typing import Any

from robustlab.attacks.base import Attack
from robustlab.common.options import Option
from robustlab.plugins import load_plugins
from robustlab.registry import ATTACKS

HEADER = """# Attack options

Generated from the attacks' `OPTIONS` declarations and docstrings
(`make docs`). From Python:
`robustlab.attacks.create(NAME, eps=..., OPTION=VALUE)` (or the class, `PGD(eps=...,
steps=...)`); from the CLI: `robustlab evaluate --attacks NAME --attack-opt NAME.OPTION=VALUE`
(the budget is the evaluation's own `--eps` / `--norm`, [evaluation.md](evaluation.md)). Every
option is checked once, when the attack is built, before any compute: a bad value raises
`AttackError` naming `NAME.OPTION` (`pgd.steps: expected an integer >= 1, got 0`), the same
line from Python and the CLI; an unknown option is named with the known ones. Budgets and
steps are in pixel units of images scaled to [0, 1] (eps 8/255, not 8).
"""

EPS_ROW = ("| `eps` | threat model | required unless the attack says otherwise | "
           "number >= 0 or a per-sample tensor [N]; <= 1 for linf | radius of the threat "
           "model (not an option: the evaluation's `--eps`) |")


def _value(v: Any) -> str:
    return "null" if v is None else (str(v).lower() if isinstance(v, bool) else f"{v}")


def _options(cls: type) -> list[inspect.Parameter]:
    """The keyword parameters `cls` documents (`eps`, objects, every option), as
    `inspect.signature(cls)` shows them."""
    return [p for p in inspect.signature(cls).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD]


def _table(options: dict[str, Option], first: str = "") -> str:
    rows = [first] if first else []
    rows += [f"| `{k}` | {o.kind} | {_value(o.default)} | {o.describe()} | {o.doc} |"
             for k, o in options.items()]
    if not rows:
        return ""
    return "| option | kind | default | accepted | meaning |\n|---|---|---|---|---|\n" + \
        "\n".join(rows) + "\n"


def _own(cls: type[Attack]) -> dict[str, Option]:
    """The options `cls` adds to, or changes from, the common ones."""
    common = Attack.options()
    return {k: o for k, o in cls.options().items() if common.get(k) != o}


def _flags(cls: type) -> str:
    facts = ["gradient-based" if cls.gradient_based else "gradient-free",
             "needs eps" if cls.needs_eps else (
                 "eps ignored (its own threat model)" if hasattr(cls, "within_threat_model")
                 else "no eps (minimum-norm)"),
             "accepts `target`" if cls.supports_target else "no `target` argument"]
    if cls.min_classes > 2:
        facts.append(f"needs >= {cls.min_classes} classes")
    return ", ".join(facts)


def _extras(cls: type[Attack]) -> str:
    """A line on the Python-only parameters (objects no option kind describes)."""
    extra = [f"`{p.name}`" for p in cls.parameters() if p.name != "eps"]
    if inspect.signature(cls).parameters.get("attack_options") is not None:
        extra.append("any option of the inner `attack`")
    return f"\nAlso (Python only): {', '.join(extra)}.\n" if extra else ""


def markdown() -> str:
    load_plugins()
    parts = [HEADER, "\n## Options every attack takes (`Attack`)\n\n",
             _table(Attack.options(), EPS_ROW)]
    for name in ATTACKS.list():
        cls = ATTACKS.get(name)
        doc = inspect.cleandoc(cls.__doc__ or "")
        own = _table(_own(cls)) or "No own options.\n"
        fixed = "".join(f"\n`{k}` is fixed to {_value(v)} (not an option here).\n"
                        for k, v in cls.fixed_options.items())
        parts.append(f"\n## `{name}` — {_flags(cls)}\n\n{doc}\n\n{own}{fixed}{_extras(cls)}")
    return "".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")
