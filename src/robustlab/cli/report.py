"""`robustlab report DIR`: report.md/.html, figures and tables (`reporting/`)."""

from __future__ import annotations

import argparse

NAME = "report"


def add_command(subparsers) -> None:
    p = subparsers.add_parser(NAME, help="write report.md/.html, figures and results "
                              "tables for an experiment (or run) folder")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from robustlab.reporting import write_report

    paths = write_report(args.dir)
    for key in ("md", "html", "json", "csv"):
        print(f"{key}: {paths[key]}")
    print(f"report: {paths['html']}")
    return 0
