"""`robustlab transfer RUN RUN [...]`: the transferability matrix (`experiments/transfer_study.py`;
docs/transfer.md)."""

from __future__ import annotations

import argparse

from robustlab.cli.common import add_study_options
from robustlab.common.vocabulary import TRANSFER_ATTACKS

NAME = "transfer"


def add_command(subparsers) -> None:
    """Register `robustlab transfer RUN RUN [...]` on `subparsers`."""
    p = subparsers.add_parser(
        NAME, help="transferability matrix: accuracy of every run on adversarial "
                   "examples crafted on every other run (docs/transfer.md)")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="two or more run folders of one dataset")
    p.add_argument("--attacks", default=",".join(TRANSFER_ATTACKS),
                   help=f"crafting attacks, comma-separated (default {','.join(TRANSFER_ATTACKS)})")
    p.add_argument("--eps", type=float, default=None,
                   help="budget in [0, 1] pixel units (default: the runs' training eps when "
                        "they agree)")
    p.add_argument("--norm", default="linf", help="linf (default) or l2")
    p.add_argument("--steps", type=int, default=20, help="attack iterations (default 20)")
    p.add_argument("--images", type=int, default=1000,
                   help="the first N test images (default 1000)")
    p.add_argument("--batch-size", type=int, default=500, help="default 500")
    p.add_argument("--no-ensemble", dest="ensemble", action="store_false",
                   help="skip the leave-one-out ensemble source row")
    add_study_options(p, out_help="JSON file (default transfer-<dataset>-eps<E>.json here)",
                      figure_help="skip the heat map PNG beside the JSON file")
    p.set_defaults(func=cmd_transfer)


def cmd_transfer(args: argparse.Namespace) -> int:
    from robustlab.experiments.transfer_study import run_transfer_study

    run_transfer_study(args.runs, out=args.out, attacks=args.attacks, eps=args.eps,
                       norm=args.norm, steps=args.steps, images=args.images,
                       batch_size=args.batch_size, seed=args.seed, device=args.device,
                       data_dir=args.data_dir, overwrite=args.overwrite,
                       ensemble=args.ensemble, figure=args.figure, progress=args.progress)
    return 0
