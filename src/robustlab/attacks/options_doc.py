"""docs/attack-options.md, generated from every registered attack's constructor signature and
docstring (`python -m robustlab.attacks.options_doc > docs/attack-options.md`; a test checks the
committed file is current, so a renamed or re-defaulted option cannot leave the docs behind)."""

from __future__ import annotations

import inspect
from typing import Any

from robustlab.attacks.base import Attack
from robustlab.plugins import load_plugins
from robustlab.registry import ATTACKS

HEADER = """# Attack options

Generated from the attacks' constructors and docstrings
(`python -m robustlab.attacks.options_doc > docs/attack-options.md`). From Python:
`robustlab.attacks.create(NAME, eps=..., OPTION=VALUE)`; from the CLI: `robustlab evaluate
--attacks NAME` (and the options named in [evaluation.md](evaluation.md)). Every option is
checked when the attack is built, before any compute; a bad value raises `AttackError` naming
the option, the value and what is accepted. Budgets and steps are in pixel units of images
scaled to [0, 1] (eps 8/255, not 8).
"""


def _value(v: Any) -> str:
    if v is inspect.Parameter.empty:
        return "required"
    return "None" if v is None else repr(v)


def _options(cls: type) -> list[inspect.Parameter]:
    return list(cls.options().values())


def _table(params: list[inspect.Parameter], skip: set[str] = frozenset()) -> str:
    rows = [f"| `{p.name}` | `{_value(p.default)}` |" for p in params if p.name not in skip]
    return "| option | default |\n|---|---|\n" + "\n".join(rows) + "\n" if rows else ""


def _flags(cls: type) -> str:
    facts = ["gradient-based" if cls.gradient_based else "gradient-free",
             "needs eps" if cls.needs_eps else (
                 "eps ignored (its own threat model)" if hasattr(cls, "within_threat_model")
                 else "no eps (minimum-norm)"),
             "accepts `target`" if cls.supports_target else "no `target` argument"]
    if cls.min_classes > 2:
        facts.append(f"needs >= {cls.min_classes} classes")
    return ", ".join(facts)


def markdown() -> str:
    load_plugins()
    common = {p.name for p in _options(Attack)}
    parts = [HEADER, "\n## Options every attack takes (`Attack`)\n\n", _table(_options(Attack))]
    for name in ATTACKS.list():
        cls = ATTACKS.get(name)
        doc = inspect.cleandoc(cls.__doc__ or "")
        own = _table(_options(cls), skip=common - {"eps", "norm", "seed"}) or "No own options.\n"
        parts.append(f"\n## `{name}` — {_flags(cls)}\n\n{doc}\n\n{own}")
    return "".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")
