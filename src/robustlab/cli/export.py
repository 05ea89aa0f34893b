"""`robustlab export RUN`: the run's model as TorchScript or ONNX (`runs/export.py`)."""

from __future__ import annotations

import argparse
from typing import Any

from robustlab.cli.common import CLIError
from robustlab.common.vocabulary import RUN_WEIGHTS, WEIGHTS_AVERAGED

NAME = "export"


def add_command(sub: Any) -> None:
    p = sub.add_parser(NAME, help="export a run's model as TorchScript or ONNX, checked "
                                      "against the model's logits (docs/own-model.md)")
    p.add_argument("run", metavar="RUN", help="run folder written by train")
    p.add_argument("--format", default="torchscript", choices=["torchscript", "onnx"],
                   help="torchscript (default) or onnx (needs the `export` extra)")
    p.add_argument("--out", required=True, help="file to write (.pt / .onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument("--run-weights", default=WEIGHTS_AVERAGED, choices=RUN_WEIGHTS,
                   help="averaged (default: the EMA / SWA weights of a run trained with them, "
                        "else the last) or last (the last iterate)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from robustlab.runs.export import export_model

    try:
        path = export_model(args.run, args.out, format=args.format, overwrite=args.overwrite,
                            weights=args.run_weights)
    except FileExistsError as err:
        raise CLIError(str(err)) from None
    print(f"wrote {path}")
    return 0
