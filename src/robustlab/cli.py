"""Command-line interface: `robustlab train | evaluate | list | reproduce | report`.

Each subcommand parses its arguments, builds a config, validates it (bad values fail here, before
any compute, with a message naming the field) and hands over to the layer below.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

import yaml

from robustlab.common.checks import check_int
from robustlab.common.threads import AUTO as THREADS_AUTO
from robustlab.common.threads import add_threads_option, use_threads
from robustlab.common.yaml_io import load_yaml
from robustlab.experiments.cli_options import add_study_options

# Options of `train` that map one-to-one onto TrainConfig fields: flag -> (field, type).
_TRAIN_FLAGS: dict[str, tuple[str, type]] = {
    "--dataset": ("dataset", str), "--model": ("model", str), "--method": ("method", str),
    "--eps": ("eps", float), "--norm": ("norm", str), "--defense": ("defense", str),
    "--epochs": ("epochs", int), "--batch-size": ("batch_size", int),
    "--optimizer": ("optimizer", str), "--lr": ("lr", float), "--momentum": ("momentum", float),
    "--weight-decay": ("weight_decay", float), "--lr-schedule": ("lr_schedule", str),
    "--eps-warmup": ("eps_warmup", float), "--eps-warmup-start": ("eps_warmup_start", float),
    "--eps-warmup-schedule": ("eps_warmup_schedule", str),
    "--noise-sigma": ("noise_sigma", float),
    "--seed": ("seed", int), "--val-size": ("val_size", int), "--train-size": ("train_size", int),
    "--augment": ("augment", str), "--data-dir": ("data_dir", str), "--device": ("device", str),
    "--memory-format": ("memory_format", str), "--amp": ("amp", str),
    "--out": ("out_dir", str),
}  # --threads: every command's, from common/threads.py (build_parser adds it)


# What each of those flags means, with its unit and default (`robustlab train --help`).
_TRAIN_HELP: dict[str, str] = {
    "dataset": "dataset name (robustlab list datasets; default mnist)",
    "model": "architecture name (robustlab list models; default lenet5)",
    "method": "training method (robustlab list methods; default standard)",
    "eps": "perturbation budget in [0, 1] pixel units; required by adversarial methods",
    "norm": "threat model of the budget: linf (default) or l2",
    "defense": "a preprocessing defense put in front of the model (robustlab list defenses)",
    "epochs": "training epochs (default: the recipe's, else 5)",
    "batch_size": "images per step (default: the recipe's, else 128)",
    "optimizer": "sgd or adam (default: the recipe's, else sgd)",
    "lr": "peak learning rate (default: the recipe's, else 0.01)",
    "momentum": "SGD momentum in [0, 1) (default 0.9)",
    "weight_decay": "L2 weight decay (default: the recipe's, else 5e-4)",
    "lr_schedule": "constant, cosine, step, piecewise or onecycle (default: the recipe's)",
    "eps_warmup": "budget warm-up length in epochs, fractions allowed (0 = none)",
    "eps_warmup_start": "warm-up starts at this fraction of eps (default 0.1: eps/10)",
    "eps_warmup_schedule": "warm-up shape: linear, cosine or exponential",
    "noise_sigma": "Gaussian noise sigma added to every training batch (0 = off)",
    "seed": "random seed; the same seed gives the same weights on CPU (default 0)",
    "val_size": "validation images carved from the training set (default: the dataset's)",
    "train_size": "use only the first N training images (quick runs)",
    "augment": "auto (the dataset's), none or crop-flip",
    "data_dir": "dataset folder (default: $ROBUSTLAB_DATA, then system locations)",
    "device": "auto (default), cpu, cuda, cuda:N or mps",
    "memory_format": "auto (default), contiguous or channels_last",
    "amp": "mixed precision: off (default) or bf16",
    "out_dir": "run folder (default runs/DATASET-MODEL-METHOD-epsE-sSEED)",
}


class CLIError(ValueError):
    pass


class _StrictParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # some Python versions pass launch_torchrun's "--" through
        argv = argv[1:]
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        print("robustlab: error: choose a command: train, evaluate, list, reproduce, report "
              "(robustlab --help)", file=sys.stderr)
        return 2
    try:
        from robustlab.plugins import load_plugins

        load_plugins(args.plugin)
        with use_threads(args.threads, say=_say_on_rank0):
            return args.func(args) or 0
    except _user_errors() as err:
        print(f"robustlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # full disk, permissions, I/O: name the file, keep the traceback out
        where = f" {err.filename}" if err.filename else ""
        full = err.errno == 28  # ENOSPC
        print(f"robustlab {args.command}: error: cannot {'write' if full else 'access'}{where}: "
              f"{err.strerror or err}{' (the disk is full)' if full else ''}"
              f"{_resume_hint(args)}", file=sys.stderr)
        return 2


def _version() -> str:
    from robustlab import __version__

    return __version__


def _resume_hint(args: argparse.Namespace) -> str:
    return ("; every file written so far is whole: fix the cause and pass --resume to "
            "continue from the last finished epoch" if args.command == "train" else "")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustlab", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    # abbreviations off: `--epoch 1` must be an error, not silently `--epochs 1`
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, so the datasets, models, methods, attacks "
                             "and defenses it registers can be named (repeatable; worker "
                             "processes read ROBUSTLAB_PLUGINS, see docs/plugins.md)")
    parser.add_argument("--version", action="version", version=f"robustlab {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=_StrictParser)

    _add_train_command(sub)
    _add_evaluate_command(sub)
    _add_certify_command(sub)
    _add_export_command(sub)

    p = sub.add_parser("list", help="list datasets, models, methods, attacks and defenses")
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "datasets", "models", "methods", "attacks", "defenses",
                            "recipes"])
    p.set_defaults(func=cmd_list)

    _add_experiment_commands(sub)
    for command in sub.choices.values():  # one --threads N|auto for every command
        add_threads_option(command)
    return parser


def _say_on_rank0(line: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(line, file=sys.stderr)


def _add_train_command(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model (any method) and write a run folder")
    p.add_argument("--config", help="TOML or YAML file of TrainConfig fields; flags override it")
    for flag, (fname, ftype) in _TRAIN_FLAGS.items():
        p.add_argument(flag, dest=fname, type=_typed(flag, ftype), default=None,
                       help=_TRAIN_HELP[fname])
    p.add_argument("--recipe", default=None,
                   help="hyper-parameters for the flags not given: auto (default: the recipe "
                        "written for the dataset and budget), paper (the paper's protocol), "
                        "none, or a recipe's name (robustlab list recipes)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a training-method option, e.g. --opt schedule=cosine (repeatable)")
    p.add_argument("--defense-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="a preprocessing-defense option (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="set any TrainConfig field (repeatable)")
    p.add_argument("--download", action="store_true", default=None,
                   help="download the dataset (checksummed) if it is not found locally")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="print no progress bar (the recipe line and the result still print)")
    p.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also log every metrics.jsonl field per epoch and the loss every 50 "
                        "steps to TensorBoard event files in DIR (needs the tensorboard "
                        "package: pip install 'robustlab[tensorboard]')")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--nproc", type=int, default=1,
                   help="train with N processes (DistributedDataParallel, launched via torchrun)")
    p.set_defaults(func=cmd_train)


def _add_evaluate_command(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate trained runs or your own model (clean and "
                                        "under attack)")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run folder(s) written by train")
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
    own.add_argument("--dataset", default=None, help="the test split to attack (with --model)")
    p.add_argument("--attacks", default="",
                   help="comma-separated attack names (default: fgsm,pgd; robustlab list "
                        "attacks)")
    p.add_argument("--attack-opt", action="append", default=[], metavar="ATTACK.KEY=VALUE",
                   help="an attack option, e.g. pgd.steps=50 or autoattack.version=standard "
                        "(repeatable; docs/attack-options.md lists them)")
    p.add_argument("--eps", type=float, default=None,
                   help="attack budget in [0, 1] pixel units (default: the run's training "
                        "eps; required with --model)")
    p.add_argument("--norm", default=None,
                   help="linf or l2, case-insensitive (default: the run's norm; linf with "
                        "--model)")
    p.add_argument("--n", type=int, default=None,
                   help="evaluate the first N test images (default: all)")
    p.add_argument("--batch-size", type=int, default=500, help="default 500")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (default: $ROBUSTLAB_DATA, then system locations)")
    p.add_argument("--out", default=None,
                   help="JSON output file (default RUN/eval.json; with --model "
                        "<PATH stem>-eval.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-audit", dest="audit", action="store_false",
                   help="skip the gradient-masking audit (default: run it)")
    p.add_argument("--no-curve", dest="curve", action="store_false",
                   help="skip the accuracy-vs-eps curve (default: PGD at 0-2x eps)")
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


def _add_certify_command(sub: Any) -> None:
    p = sub.add_parser("certify", help="certified L2 radius per test image by randomized "
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
    from robustlab.experiments.certify import certify_run

    certify_run(args.run, sigma=args.sigma, images=args.images, device=args.device,
                data_dir=args.data_dir, out=args.out, overwrite=args.overwrite,
                progress=args.progress, figure=args.figure, n0=args.n0, n=args.n,
                alpha=args.alpha, batch_size=args.batch_size, seed=args.seed)
    return 0


def _add_export_command(sub: Any) -> None:
    p = sub.add_parser("export", help="export a run's model as TorchScript or ONNX, checked "
                                      "against the model's logits (docs/own-model.md)")
    p.add_argument("run", metavar="RUN", help="run folder written by train")
    p.add_argument("--format", default="torchscript", choices=["torchscript", "onnx"],
                   help="torchscript (default) or onnx (needs the `export` extra)")
    p.add_argument("--out", required=True, help="file to write (.pt / .onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from robustlab.runs.export import export_model

    try:
        path = export_model(args.run, args.out, format=args.format, overwrite=args.overwrite)
    except FileExistsError as err:
        raise CLIError(str(err)) from None
    print(f"wrote {path}")
    return 0


def _config_fields(path: str | None) -> dict[str, Any]:
    """The fields of `--config PATH` ({} without one); an empty file is said on stderr."""
    from robustlab.training import load_config_file

    data: dict[str, Any] = load_config_file(path) if path else {}
    if path and not data:
        print(f"warning: config file {path} holds no fields: every field comes from the "
              "flags or its default", file=sys.stderr)
    return data


def _warn_unused_eps(cfg: Any) -> None:
    """A budget given to a method that trains without one is ignored: say so (the autoencoder
    uses it only to attack its adversarial_run's classifier)."""
    from robustlab.registry import METHODS

    if (cfg.eps is not None and not getattr(METHODS.get(cfg.method), "needs_eps", False)
            and cfg.method_options.get("adversarial_run") is None):
        print(f"warning: method {cfg.method!r} trains without a perturbation budget: eps "
              f"{cfg.eps:g} is ignored (recorded in config.json only)", file=sys.stderr)


def cmd_train(args: argparse.Namespace) -> int:
    from robustlab.training import ConfigError, train
    from robustlab.training.distributed import launched_by_torchrun
    from robustlab.training.recipes import AUTO, configure

    check_int("--nproc", args.nproc, 1, error=CLIError)

    data = _config_fields(args.config)
    for fname, _ in _TRAIN_FLAGS.values():
        if getattr(args, fname) is not None:
            data[fname] = getattr(args, fname)
    for fname in ("download", "compile", "progress"):
        if getattr(args, fname) is not None:
            data[fname] = getattr(args, fname)
    if args.threads != THREADS_AUTO:  # an explicit count is the run's TrainConfig.threads
        data["threads"] = args.threads
    for item in args.set:
        key, value = parse_key_value(item, "--set")
        data[key] = value
    for field, items, flag in (("method_options", args.opt, "--opt"),
                               ("defense_options", args.defense_opt, "--defense-opt")):
        if items:
            data[field] = {**_options_table(data, field),
                           **dict(parse_key_value(o, flag) for o in items)}
    recipe = args.recipe or data.pop("recipe", None) or AUTO
    try:
        cfg = configure(data, recipe, source=args.config or "command line")
    except TypeError as err:
        raise ConfigError(str(err)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"recipe: {_recipe_line(cfg, recipe)}")
        _warn_unused_eps(cfg)
    if args.nproc > 1 and not launched_by_torchrun():
        return launch_torchrun(args.nproc, args.argv)
    callbacks = []
    if args.tensorboard and int(os.environ.get("RANK", "0")) == 0:
        from robustlab.training.callbacks import TensorBoardLogger

        try:
            callbacks.append(TensorBoardLogger(args.tensorboard))
        except ImportError as err:
            raise CLIError(str(err)) from None
    result = train(cfg, resume=args.resume, overwrite=args.overwrite, callbacks=callbacks)
    for cb in callbacks:
        cb.close()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if result.summary["test_acc"] is not None:
        print(f"test accuracy: {result.summary['test_acc']:.4f}")
    health = result.summary.get("health", "ok")
    if health == "non-finite loss":
        print(f"robustlab train: error: the training loss became non-finite (NaN or inf) at "
              f"epoch {result.summary.get('epochs_done')}; training stopped there. Lower --lr "
              "or check the data; the run folder records it", file=sys.stderr)
        return 1
    if health != "ok":
        print(f"warning: training verdict {health!r}: this model did not learn as it should "
              "(per-epoch flags in metrics.jsonl)", file=sys.stderr)
    print(f"run folder: {result.run_dir}")
    return 0


def _options_table(data: dict[str, Any], field: str) -> dict[str, Any]:
    value = data.get(field, {})
    if not isinstance(value, dict):
        raise CLIError(f"{field}: expected a table of options, got {value!r}")
    return value


def _recipe_line(cfg, asked: str) -> str:
    from robustlab.training.recipes import RECIPES

    if cfg.recipe is None:
        why = "--recipe none" if asked == "none" else f"no recipe is written for {cfg.dataset}"
        return (f"none applied ({why}): the TrainConfig defaults (the paper's: SGD, lr "
                "0.01, batch 128) and the flags given")
    return RECIPES[cfg.recipe].describe(cfg) + "; flags given override it"


def cmd_evaluate(args: argparse.Namespace) -> int:
    from robustlab.training.distributed import launched_by_torchrun

    check_int("--nproc", args.nproc, 1, error=CLIError)
    if bool(args.runs) == bool(args.model):
        raise CLIError("give run folder(s) or --model PATH.py:FACTORY, not "
                       + ("both" if args.runs else "neither"))
    own = (args.weights, args.normalize, args.dataset)
    if not args.model and any(v is not None for v in own):
        raise CLIError("--weights, --normalize and --dataset go with --model")
    if args.nproc > 1 and not launched_by_torchrun():
        return launch_torchrun(args.nproc, args.argv)
    attacks = _parse_attacks(args.attacks)
    common = dict(attacks=attacks, eps=args.eps, norm=args.norm, n=args.n,
                  batch_size=args.batch_size, seed=args.seed, device=args.device,
                  data_dir=args.data_dir, out=args.out, overwrite=args.overwrite,
                  attack_options=parse_attack_options(args.attack_opt), audit=args.audit,
                  progress=args.progress, save_adv=args.save_adv,
                  **({} if args.curve else {"curve_attack": None}))
    if args.model:
        from robustlab.experiments.evaluate_own import evaluate_user_model

        evaluate_user_model(args.model, dataset=args.dataset, weights=args.weights,
                            normalize=_parse_normalize(args.normalize), **common)
        return 0
    from robustlab.experiments.evaluate_runs import evaluate_runs

    evaluate_runs(args.runs, non_adaptive=args.non_adaptive, **common)
    return 0


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


def cmd_list(args: argparse.Namespace) -> int:
    from robustlab import catalog

    for kind, names in catalog.all_names().items():
        if args.what in ("all", kind):
            print(f"{kind}: {', '.join(names) if names else '(none)'}")
    return 0


def _add_experiment_commands(sub) -> None:
    from robustlab.experiments.cli_commands import add_commands
    from robustlab.experiments.transfer_cli import add_command as add_transfer_command

    add_commands(sub)
    add_transfer_command(sub)


def launch_torchrun(nproc: int, argv: list[str]) -> int:
    """Re-run this `train` / `evaluate` command under torchrun with `nproc` processes on this
    machine (each with cores // nproc torch threads unless OMP_NUM_THREADS is set)."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # "--" ends torchrun's own options: without it, its argparse reads our flags as
    # abbreviations of its own (`--n` is "ambiguous" among --nnodes, --node-rank, ...).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "-m", "--", "robustlab", *rest]
    return subprocess.run(cmd, env=env, check=False).returncode


def parse_key_value(item: str, flag: str) -> tuple[str, Any]:
    """'key=value' -> (key, value parsed as YAML scalar/list: 3 -> int, true -> bool, ...)."""
    if "=" not in item:
        raise CLIError(f"{flag}: expected KEY=VALUE, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = load_yaml(raw) if raw else ""
    except yaml.YAMLError:  # not YAML: the raw text, which the field's check judges
        value = raw
    return key.strip().replace("-", "_"), value


def _typed(flag: str, ftype: type):
    def convert(text: str):
        if ftype is str:
            return text
        try:
            return ftype(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag}: expected {ftype.__name__}, got {text!r}") from None

    return convert


def _user_errors() -> tuple[type[BaseException], ...]:
    from robustlab.common.device import DeviceError
    from robustlab.common.files import FileFormatError
    from robustlab.data import DataError
    from robustlab.experiments.executors import WorkerDiedError
    from robustlab.plugins import PluginError
    from robustlab.registry import RegistryError
    from robustlab.runs.checkpoint import WeightsError
    from robustlab.training import ConfigError, RunFolderError

    return (CLIError, ConfigError, DataError, RegistryError, RunFolderError, FileNotFoundError,
            DeviceError, FileFormatError, WeightsError, PluginError,
            WorkerDiedError)  # a dead worker (killed, out of memory): rerun resumes


if __name__ == "__main__":
    raise SystemExit(main())
