"""`robustlab list [WHAT]`: every registered name (`robustlab.catalog`)."""

from __future__ import annotations

import argparse
from typing import Any

NAME = "list"


KINDS = ("all", "datasets", "models", "methods", "attacks", "defenses", "recipes")


def add_command(sub: Any) -> None:
    p = sub.add_parser(NAME, help="list datasets, models, methods, attacks and defenses")
    p.add_argument("what", nargs="?", default="all", choices=list(KINDS))
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from robustlab import catalog

    for kind, names in catalog.all_names().items():
        if args.what in ("all", kind):
            print(f"{kind}: {', '.join(names) if names else '(none)'}")
    return 0
