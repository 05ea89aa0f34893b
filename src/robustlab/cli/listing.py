"""`robustlab list [WHAT]`: every registered name and the zoo's pretrained models
(`robustlab.catalog`)."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "list"


KINDS = ("all", "datasets", "models", "methods", "attacks", "defenses", "recipes", "pretrained")


def add_command(sub: Any) -> None:
    p = sub.add_parser(NAME, help="list datasets, models, methods, attacks, defenses, recipes "
                                  "and pretrained models (the zoo)")
    p.add_argument("what", nargs="?", default="all", choices=list(KINDS))
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from robustlab import catalog

    for kind, names in catalog.all_names().items():
        if args.what in ("all", kind):
            print(f"{kind}: {', '.join(names) if names else _nothing(kind)}")
    return 0


def _nothing(kind: str) -> str:
    if kind == "pretrained":
        from robustlab.zoo.cards import NOTHING_SHIPPED

        return f"(none: {NOTHING_SHIPPED}; docs/zoo.md)"
    return "(none)"
