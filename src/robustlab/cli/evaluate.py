"""`robustlab evaluate`: run folders (`evaluation/runs.py`) or the user's own model
(`evaluation/own_model.py`), clean and under attack."""

from __future__ import annotations

import argparse
from typing import Any

from robustlab.cli.common import CLIError, launch_torchrun, parse_key_value
from robustlab.common.checks import check_int
from robustlab.common.vocabulary import NORM_DEFAULT_ATTACKS, NORMS, RUN_WEIGHTS

NAME = "evaluate"


def add_command(sub: Any) -> None:
    p = sub.add_parser(NAME, help="evaluate trained runs or your own model (clean and "
                                        "under attack)")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run folder(s) written by train")
    p.add_argument("--run-weights", default=None, choices=RUN_WEIGHTS,
                   help="which weights of a run: averaged (default: the EMA / SWA weights of "
                        "a run trained with --ema or --swa-start, else the last) or last (the "
                        "last iterate)")
    _add_model_arguments(p)
    p.add_argument("--attacks", default="",
                   help="comma-separated attack names (default: fgsm,pgd; at l1 "
                        f"{','.join(NORM_DEFAULT_ATTACKS['l1'])}, at l0 "
                        f"{','.join(NORM_DEFAULT_ATTACKS['l0'])}; robustlab list attacks)")
    p.add_argument("--attack-opt", action="append", default=[], metavar="ATTACK.KEY=VALUE",
                   help="an attack option, e.g. pgd.steps=50 or autoattack.version=standard "
                        "(repeatable; docs/attack-options.md lists them)")
    p.add_argument("--eps", type=float, default=None,
                   help="attack budget in [0, 1] pixel units (default: the run's training "
                        "eps, the entry's with --robustbench; required with --model)")
    p.add_argument("--norm", default=None,
                   help=f"{', '.join(NORMS)}, case-insensitive; l1 and l0 need attacks that "
                        "support them (l1: apgd-ce, apgd-t, autoattack; l0, --eps a whole "
                        "number of pixels: sparse-rs, sparse-pgd, fmn); the curve and the "
                        "audit are off there by default, and a line says so (default: the "
                        "run's norm; linf with --model; the entry's threat model with "
                        "--robustbench)")
    p.add_argument("--images", "--n", dest="n", type=int, default=None, metavar="N",
                   help="evaluate the first N test images (default: all); --images as in "
                        "certify and transfer (--n: the same, its older name)")
    p.add_argument("--batch-size", type=int, default=500, help="default 500")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (default: $ROBUSTLAB_DATA, then system locations)")
    p.add_argument("--out", default=None,
                   help="JSON output file (default RUN/eval.json; with --model "
                        "<PATH stem>-eval.json; with --robustbench or --pretrained "
                        "NAME-eval.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    for flag, what in (("audit", "the gradient-masking audit (PGD, Square)"),
                       ("curve", "the accuracy-vs-eps curve (PGD at 0-2x eps)")):
        p.add_argument(f"--{flag}", dest=flag, action="store_true", default=None,
                       help=f"run {what} (default: at linf and l2; refused at l1 / l0)")
        p.add_argument(f"--no-{flag}", dest=flag, action="store_false", default=None,
                       help=f"skip {what}")
    p.add_argument("--save-adv", default=None, metavar="DIR",
                   help="write each attack's adversarial examples to DIR/ATTACK.safetensors "
                        "(x_adv, labels, robust; with several runs DIR/RUN_NAME/...)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="print no progress on stderr (default: a bar per attack on a "
                        "terminal, one line per attack otherwise)")
    p.add_argument("--non-adaptive", action="store_true",
                   help="also report non-adaptive numbers (labelled) for preprocessing defenses")
    p.add_argument("--nproc", type=int, default=1,
                   help="attack with N processes (torchrun); results equal one process's "
                        "(default 1)")
    p.set_defaults(func=cmd_evaluate)


def _add_model_arguments(p: Any) -> None:
    """--model and its flags; --robustbench and its flags (instead of run folders)."""
    own = p.add_argument_group("your own model (instead of RUN; docs/own-model.md)")
    own.add_argument("--model", default=None, metavar="PATH.py:FACTORY",
                     help="FACTORY() in PATH.py returns an nn.Module taking [0, 1] images, or "
                          "PATH is a TorchScript file (.pt, .pth, .ts)")
    own.add_argument("--weights", default=None, metavar="FILE",
                     help="state dict: .safetensors, or a torch file read with "
                          "weights_only=True (no pickled code runs)")
    own.add_argument("--normalize", nargs=2, default=None, metavar=("MEAN", "STD"),
                     help="per-channel input normalisation applied before the model, "
                          "comma-separated, e.g. 0.4914,0.4822,0.4465 0.247,0.243,0.261")
    own.add_argument("--dataset", default=None,
                     help="the test split to attack (with --model; with --robustbench the "
                          "entry's dataset, default cifar10)")
    p.add_argument("--pretrained", default=None, metavar="NAME",
                   help="a model of robustlab's zoo, instead of RUN (robustlab list pretrained; "
                        "--eps and --norm default to its card's; docs/zoo.md)")
    rb = p.add_argument_group("a RobustBench model (instead of RUN; docs/robustbench.md)")
    rb.add_argument("--robustbench", default=None, metavar="NAME",
                    help="a RobustBench entry, e.g. Carmon2019Unlabeled (--eps and --norm "
                         "default to the entry's)")
    rb.add_argument("--threat-model", default="Linf", help="the entry's threat model: Linf "
                                                           "(default) or L2")
    rb.add_argument("--robustbench-file", default=None, metavar="PATH",
                    help="the entry's checkpoint file on disk (offline; default: the cache)")
    rb.add_argument("--download", action="store_true",
                    help="download the entry's checkpoint into the cache, and the dataset, "
                         "if they are not there")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from robustlab.training.distributed import launched_by_torchrun

    check_int("--nproc", args.nproc, 1, error=CLIError)
    _check_model_source(args)
    if args.model and args.run_weights is not None:
        raise CLIError("--run-weights goes with run folders (RUN), not --model (whose weight "
                       "file is --weights)")
    if args.nproc > 1 and not launched_by_torchrun():
        return launch_torchrun(args.nproc, args.argv)
    attacks = _parse_attacks(args.attacks)
    common = dict(attacks=attacks, eps=args.eps, norm=args.norm, n=args.n,
                  batch_size=args.batch_size, seed=args.seed, device=args.device,
                  data_dir=args.data_dir, out=args.out, overwrite=args.overwrite,
                  attack_options=parse_attack_options(args.attack_opt), audit=args.audit,
                  progress=args.progress, save_adv=args.save_adv, curve=args.curve)
    if args.pretrained:
        from robustlab.evaluation.own_model import evaluate_pretrained_model

        evaluate_pretrained_model(args.pretrained, **common)
        return 0
    if args.robustbench:
        from robustlab.evaluation.own_model import evaluate_robustbench_model

        evaluate_robustbench_model(args.robustbench, dataset=args.dataset,
                                   threat_model=args.threat_model,
                                   file=args.robustbench_file, download=args.download,
                                   **common)
        return 0
    if args.model:
        from robustlab.evaluation.own_model import evaluate_user_model

        evaluate_user_model(args.model, dataset=args.dataset, weights=args.weights,
                            normalize=_parse_normalize(args.normalize), **common)
        return 0
    from robustlab.evaluation.runs import evaluate_runs

    evaluate_runs(args.runs, non_adaptive=args.non_adaptive, run_weights=args.run_weights,
                  **common)
    return 0


def _check_model_source(args: argparse.Namespace) -> None:
    """Exactly one of run folders, --model, --robustbench, --pretrained; each one's flags only
    with it."""
    given = [name for name, value in (("run folder(s)", args.runs), ("--model", args.model),
                                      ("--robustbench", args.robustbench),
                                      ("--pretrained", args.pretrained)) if value]
    if args.pretrained and len(given) == 1:
        _check_pretrained_flags(args)
    if args.pretrained and len(given) > 1:
        raise CLIError(f"give --pretrained NAME alone, not with {given[0]}")
    if len(given) != 1:
        raise CLIError("give run folder(s), --model PATH.py:FACTORY or --robustbench NAME: "
                       + (f"not both ({' and '.join(given)})" if len(given) == 2 else
                          f"not all three ({', '.join(given)})" if given else "none given"))
    if args.runs and any(v is not None for v in (args.weights, args.normalize, args.dataset)):
        raise CLIError("--weights, --normalize and --dataset go with --model (--dataset also "
                       "with --robustbench)")
    if args.robustbench and any(v is not None for v in (args.weights, args.normalize,
                                                        getattr(args, "run_weights", None))):
        raise CLIError("--weights, --normalize and --run-weights do not go with --robustbench "
                       "(the entry brings its weights and normalisation)")
    rb_flags = (args.robustbench_file is not None or args.download
                or args.threat_model != "Linf")
    if rb_flags and not args.robustbench:
        raise CLIError("--threat-model, --robustbench-file and --download go with "
                       "--robustbench NAME")


def _check_pretrained_flags(args: argparse.Namespace) -> None:
    if any(v is not None for v in (args.weights, args.normalize, args.dataset,
                                   args.run_weights, args.robustbench_file)) \
            or args.download or args.threat_model != "Linf":
        raise CLIError("--pretrained NAME brings its weights, dataset and normalisation: "
                       "--weights, --normalize, --dataset, --run-weights and the --robustbench "
                       "flags do not go with it")


def _parse_attacks(text: str) -> list[str]:
    """--attacks "fgsm, pgd" -> ["fgsm", "pgd"]; "" (not given) -> [] (the default attacks).
    Given but naming no attack (",", " "), it is refused: not silently the default."""
    attacks = [a.strip() for a in text.split(",") if a.strip()]
    if text and not attacks:
        raise CLIError(f"--attacks: expected comma-separated attack names (e.g. fgsm,pgd; "
                       f"robustlab list attacks), got {text!r}")
    return attacks


def parse_attack_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """['pgd.steps=50', 'autoattack.version=standard'] -> {'pgd': {'steps': 50}, ...}."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        if not dot or "=" not in rest or not name:
            raise CLIError(f"--attack-opt: expected ATTACK.KEY=VALUE (e.g. pgd.steps=50), "
                           f"got {item!r}")
        key, value = parse_key_value(rest, "--attack-opt")
        options.setdefault(name.strip(), {})[key] = value
    return options


def _parse_normalize(pair: list[str] | None) -> tuple[list[float], list[float]] | None:
    if pair is None:
        return None
    try:
        mean, std = ([float(v) for v in part.split(",")] for part in pair)
    except ValueError:
        raise CLIError(f"--normalize: expected MEAN STD as comma-separated numbers (e.g. "
                       f"0.1307 0.3081), got {' '.join(pair)!r}") from None
    if len(mean) != len(std) or min(std) <= 0:
        raise CLIError(f"--normalize: expected as many MEAN as STD values, every STD > 0; "
                       f"got mean {mean}, std {std}")
    return mean, std
