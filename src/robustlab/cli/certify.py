"""`robustlab certify RUN`: certified L2 radii by randomized smoothing
(`certification/study.py`; docs/certification.md)."""

from __future__ import annotations

import argparse
from typing import Any

from robustlab.cli.common import add_study_options

NAME = "certify"


def add_command(sub: Any) -> None:
    p = sub.add_parser(NAME, help="certified L2 radius per test image by randomized "
                                       "smoothing (Cohen et al. 2019; docs/certification.md)")
    p.add_argument("run", metavar="RUN", help="run folder written by train")
    p.add_argument("--sigma", type=float, default=None,
                   help="noise std in [0, 1] pixel units (default: a gaussian-aug run's own)")
    p.add_argument("--n0", type=int, default=100, help="samples that pick the class (100)")
    p.add_argument("--n", type=int, default=10_000, help="samples that bound its probability "
                                                        "(10000)")
    p.add_argument("--alpha", type=float, default=0.001, help="failure probability (0.001)")
    p.add_argument("--images", type=int, default=500,
                   help="certify the first N test images (default 500)")
    p.add_argument("--batch-size", type=int, default=1000, help="noisy copies per forward pass")
    add_study_options(p, out_help="JSON file (default RUN/certify-sigmaS.json)",
                      figure_help="skip the PNG curve beside the JSON file")
    p.set_defaults(func=cmd_certify)


def cmd_certify(args: argparse.Namespace) -> int:
    from robustlab.certification.study import certify_run

    certify_run(args.run, sigma=args.sigma, images=args.images, device=args.device,
                data_dir=args.data_dir, out=args.out, overwrite=args.overwrite,
                progress=args.progress, figure=args.figure, n0=args.n0, n=args.n,
                alpha=args.alpha, batch_size=args.batch_size, seed=args.seed)
    return 0
