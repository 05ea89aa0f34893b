"""`robustlab benchmark`: RobustBench's protocol (the first n test images, AutoAttack standard,
the model's own eps) on a RobustBench entry, a zoo model, a run folder or your own model
(`experiments/benchmark.py`; docs/benchmark.md)."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from robustlab.cli.common import CLIError
from robustlab.common.checks import check_int, check_number
from robustlab.common.vocabulary import RUN_WEIGHTS

NAME = "benchmark"


def add_command(sub: Any) -> None:
    p = sub.add_parser(NAME, help="RobustBench's protocol: clean and AutoAttack accuracy on "
                                  "the first N test images, with 95%% confidence intervals, "
                                  "and a model_info JSON (docs/benchmark.md)")
    p.add_argument("run", nargs="?", default=None, metavar="RUN",
                   help="a run folder written by train (or one of the sources below)")
    p.add_argument("--run-weights", default=None, choices=RUN_WEIGHTS,
                   help="which weights of RUN (default: averaged when it has them)")
    p.add_argument("--pretrained", default=None, metavar="NAME",
                   help="a model of robustlab's zoo (robustlab list pretrained; docs/zoo.md)")
    rb = p.add_argument_group("a RobustBench model (docs/robustbench.md)")
    rb.add_argument("--robustbench", default=None, metavar="NAME",
                    help="a RobustBench entry, e.g. Carmon2019Unlabeled")
    rb.add_argument("--threat-model", default=None, help="Linf (default) or L2")
    rb.add_argument("--robustbench-file", default=None, metavar="PATH",
                    help="the entry's checkpoint file on disk (default: the cache)")
    rb.add_argument("--download", action="store_true",
                    help="download the checkpoint and the dataset if they are missing")
    own = p.add_argument_group("your own model (docs/own-model.md)")
    own.add_argument("--model", default=None, metavar="PATH.py:FACTORY",
                     help="FACTORY() in PATH.py returns an nn.Module taking [0, 1] images")
    own.add_argument("--weights", default=None, metavar="FILE",
                     help="its state dict (.safetensors, or a torch file read weights_only)")
    p.add_argument("--dataset", default=None,
                   help="the test set (required with --model; with --robustbench the "
                        "entry's, default cifar10)")
    p.add_argument("--images", "--n", dest="images", type=int, default=None, metavar="N",
                   help="the first N test images (default 10000: RobustBench's full test "
                        "set; --n: the same, as in evaluate)")
    p.add_argument("--eps", type=float, default=None,
                   help="override the budget, in pixel units of [0, 1] images (default: the "
                        "entry's, the card's or the run's; required with --model); the output "
                        "says it was overridden")
    p.add_argument("--norm", default=None, help="override the norm: linf or l2")
    p.add_argument("--batch-size", type=int, default=500, help="default 500")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (default: $ROBUSTLAB_DATA, then system locations)")
    p.add_argument("--out", default=None,
                   help="the JSON (default RUN/benchmark.json, else ./benchmark-NAME.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="print no progress on stderr")
    p.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> int:
    _check_arguments(args)
    from robustlab.experiments.benchmark import run_benchmark

    source = _source(args)
    run_benchmark(source, images=args.images, eps=args.eps, norm=args.norm,
                  batch_size=args.batch_size, seed=args.seed, device=args.device,
                  data_dir=args.data_dir, out=args.out, overwrite=args.overwrite,
                  progress=args.progress,
                  command=shlex.join(["robustlab", *getattr(args, "argv", [NAME])]))
    return 0


def _source(args: argparse.Namespace) -> Any:
    from robustlab.experiments import benchmark as bench

    if args.robustbench:
        return bench.robustbench_source(args.robustbench, dataset=args.dataset,
                                        threat_model=args.threat_model,
                                        file=args.robustbench_file, download=args.download)
    if args.pretrained:
        return bench.pretrained_source(args.pretrained)
    if args.model:
        return bench.model_source(args.model, dataset=args.dataset, weights=args.weights)
    return bench.run_source(args.run, weights=args.run_weights, data_dir=args.data_dir)


def _check_arguments(args: argparse.Namespace) -> None:
    """Exactly one source, each flag only with its source, the counts: before any compute."""
    given = [name for name, value in (("RUN", args.run), ("--robustbench", args.robustbench),
                                      ("--pretrained", args.pretrained),
                                      ("--model", args.model)) if value]
    if len(given) != 1:
        raise CLIError("give one of RUN, --robustbench NAME, --pretrained NAME or --model "
                       "PATH.py:FACTORY: " + (f"got {' and '.join(given)}" if given else
                                              "none given"))
    only = {"--run-weights": (args.run_weights is not None, "RUN"),
            "--threat-model": (args.threat_model is not None, "--robustbench"),
            "--robustbench-file": (args.robustbench_file is not None, "--robustbench"),
            "--download": (args.download, "--robustbench"),
            "--weights": (args.weights is not None, "--model"),
            "--dataset": (args.dataset is not None and not (args.model or args.robustbench),
                          "--model or --robustbench")}
    for flag, (used, owner) in only.items():
        if used and (flag == "--dataset" or owner not in given):
            raise CLIError(f"{flag} goes with {owner}, not {given[0]}")
    if args.images is not None:
        check_int("--images", args.images, 1, error=CLIError)
    check_int("--batch-size", args.batch_size, 1, error=CLIError)
    if args.eps is not None:
        check_number("--eps", args.eps, 0.0, low_open=True, error=CLIError)
