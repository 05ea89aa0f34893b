"""docs/method-options.md, generated from every registered method's `OPTIONS`
(`make docs`; a test checks the committed file is current)."""

from __future__ import annotations

from typing import Any

from robustlab.plugins import load_plugins
from robustlab.registry import METHODS
from robustlab.training.methods.options import defaults_of

HEADER = """# Training-method options

Generated from the methods' `OPTIONS` declarations
(`make docs`); set them with
`robustlab train --opt NAME=VALUE` or a config's `method_options` table. A bad value fails
before any compute, naming the option, the value and what is accepted.
"""


def _value(v: Any) -> str:
    return "null" if v is None else (str(v).lower() if isinstance(v, bool) else f"{v}")


def _parent(cls: type) -> type | None:
    """The registered class `cls` varies (same options, other defaults), if any."""
    for base in cls.__mro__[1:]:
        if getattr(base, "name", "") in METHODS and METHODS.get(base.name) is base:
            return base if set(base.OPTIONS) == set(cls.OPTIONS) else None
    return None


def markdown() -> str:
    load_plugins()
    parts = [HEADER]
    for name in METHODS.list():
        cls = METHODS.get(name)
        parts.append(f"\n## `{name}`\n\n")
        parent = _parent(cls)
        if not cls.OPTIONS:
            parts.append("No options.\n")
        elif parent is not None:
            mine, theirs = defaults_of(cls.OPTIONS), defaults_of(parent.OPTIONS)
            changed = ", ".join(f"`{k}` = {_value(v)}" for k, v in mine.items()
                                if theirs[k] != v) or "none"
            parts.append(f"The options of `{parent.name}`; defaults changed: {changed}.\n")
        else:
            rows = [f"| `{k}` | {_value(o.default)} | {o.describe()} | {o.doc} |"
                    for k, o in cls.OPTIONS.items()]
            parts.append("| option | default | accepted | meaning |\n|---|---|---|---|\n"
                         + "\n".join(rows) + "\n")
    return "".join(parts)


if __name__ == "__main__":
    print(markdown(), end="")
