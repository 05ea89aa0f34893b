"""`robustlab reproduce --preset NAME`: the paper's experiment from a preset
(`experiments/runner.py`), resuming what OUT already holds."""

from __future__ import annotations

import argparse

from robustlab.common.threads import AUTO, add_threads_option

NAME = "reproduce"


def add_command(subparsers) -> None:
    from robustlab.experiments.presets import PRESETS

    p = subparsers.add_parser(NAME, help="run the paper's experiment from a preset "
                              "(resumes what OUT already holds)")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS),
                   help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()))
    p.add_argument("--out", default=None, help="experiment folder (default results/PRESET)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes PER DEVICE of --device, each pinned to its device; "
                        "a free worker takes the next job (with --executor ray: Ray tasks at "
                        "a time)")
    add_threads_option(p, help="torch threads per worker, N or auto (default auto: cores // "
                               "total workers; at most 2 on CUDA)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine; ray: Ray tasks on the "
                        "cluster RAY_ADDRESS names, else a local Ray (pip install "
                        "'robustlab[ray]')")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--download", action="store_true",
                   help="download (checksum-verified) any preset dataset not found locally")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda, cuda:N or a comma list of cards (cuda:0,cuda:1); "
                        "--workers processes run on each (Ray: one entry, no card number)")
    p.add_argument("--model", default=None, help="override every dataset's model (e.g. smallcnn)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard OUT's runs and start again (default: resume)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="train and evaluate only")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from robustlab.data import load_dataset
    from robustlab.experiments.devices import executor_workers
    from robustlab.experiments.executors import check_executor
    from robustlab.experiments.presets import get_preset
    from robustlab.experiments.runner import reproduce

    preset = get_preset(args.preset)
    check_executor(args.executor)  # before any data is read or fetched
    threads = None if args.threads == AUTO else args.threads
    executor_workers(args.device, args.workers, threads=threads, executor=args.executor)
    for ds in preset.datasets:  # found (or fetched) once here: a missing dataset fails fast,
        load_dataset(ds.dataset, root=args.data_dir, download=args.download)  # not mid-grid
    out = args.out or f"results/{preset.name}"
    path = reproduce(preset, out, workers=args.workers, data_dir=args.data_dir,
                     overwrite=args.overwrite, model=args.model, device=args.device,
                     report=args.report, threads=threads, executor=args.executor)
    print(f"report: {path}" if args.report else f"results in {path}")
    return 0
