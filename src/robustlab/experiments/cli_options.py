"""Options shared by the study commands that read runs and write one result file plus its
figure (`certify`, `transfer`): seed, device, data folder, output, overwrite, figure, progress."""

from __future__ import annotations

import argparse


def add_study_options(p: argparse.ArgumentParser, *, out_help: str, figure_help: str) -> None:
    """Add --seed, --device, --data-dir, --out (`out_help`), --overwrite, --no-figure
    (`figure_help`) and --no-progress to `p`."""
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--data-dir", default=None, help="dataset folder (default $ROBUSTLAB_DATA)")
    p.add_argument("--out", default=None, help=out_help)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-figure", dest="figure", action="store_false", help=figure_help)
    p.add_argument("--no-progress", dest="progress", action="store_false")
