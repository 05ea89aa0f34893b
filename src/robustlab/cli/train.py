"""`robustlab train`: flags and a config file -> a `TrainConfig` (recipe applied, checked before
any compute) -> `robustlab.training.train`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from robustlab.cli.common import CLIError, launch_torchrun, on_rank0, parse_key_value, typed
from robustlab.common.checks import check_int
from robustlab.common.threads import AUTO as THREADS_AUTO
from robustlab.common.vocabulary import AUTO_WEIGHTS_LAYOUT, HEALTH_NON_FINITE, HEALTH_OK

NAME = "train"

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
    "--awp": ("awp", float), "--awp-warmup": ("awp_warmup", float),
    "--label-smoothing": ("label_smoothing", float),
    "--ema": ("ema", float), "--swa-start": ("swa_start", float),
    "--seed": ("seed", int), "--val-size": ("val_size", int), "--train-size": ("train_size", int),
    "--augment": ("augment", str), "--data-dir": ("data_dir", str), "--device": ("device", str),
    "--memory-format": ("memory_format", str), "--amp": ("amp", str),
    "--extra-images": ("extra_images", str), "--extra-teacher": ("extra_teacher", str),
    "--extra-fraction": ("extra_fraction", float),
    "--out": ("out_dir", str),
}  # --threads: every command's, from common/threads.py (build_parser adds it)

# What each of those flags means, with its unit and default (`robustlab train --help`).
_TRAIN_HELP: dict[str, str] = {
    "dataset": "dataset name (robustlab list datasets; default mnist)",
    "model": "architecture name (robustlab list models; default lenet5)",
    "method": "training method (robustlab list methods; default standard)",
    "eps": "perturbation budget in pixel units (linf/l2: in [0, 1]; l1: the L1 radius, e.g. "
           "10 on MNIST); required by adversarial methods",
    "norm": "threat model of the budget: linf (default), l2, or l1 (pgd-at, the hybrid "
            "family and standard only: L1-APGD training examples; recipe mnist-l1)",
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
    "awp": "adversarial weight perturbation: relative size gamma (0 = off; 0.01 for "
           "pgd-at, 0.005 for trades, as in Wu et al. 2020)",
    "awp_warmup": "epochs before AWP starts (default 0)",
    "label_smoothing": "label smoothing of the training cross-entropy, in [0, 1) (0 = off)",
    "ema": "evaluate an exponential moving average of the weights with this decay per "
           "step, in [0, 1) (0 = off, the default; typical 0.995-0.9999)",
    "swa_start": "SWA: average the epoch-end weights of the epochs after this many "
                 "(< epochs; default off)",
    "seed": "random seed; the same seed gives the same weights on CPU (default 0)",
    "val_size": "validation images carved from the training set (default: the dataset's)",
    "train_size": "use only the first N training images (quick runs)",
    "augment": "auto (the dataset's), none or crop-flip",
    "data_dir": "dataset folder (default: $ROBUSTLAB_DATA, then system locations)",
    "device": "auto (default), cpu, cuda, cuda:N or mps",
    "memory_format": f"auto (default: {AUTO_WEIGHTS_LAYOUT}), contiguous or channels_last",
    "amp": "mixed precision: off (default) or bf16",
    "extra_images": "unlabeled extra images, pseudo-labelled by --extra-teacher (RST): a "
                    ".safetensors file with a tensor x [N, C, H, W] or a .npy array, float in "
                    "[0, 1] or uint8",
    "extra_teacher": "run folder of a finished run whose model labels --extra-images",
    "extra_fraction": "share of each batch drawn from the extra images, in (0, 1) (default "
                      "0.5, as in RST)",
    "out_dir": "run folder (default runs/DATASET-MODEL-METHOD-epsE-sSEED)",
}


def add_command(sub: Any) -> None:
    p = sub.add_parser(NAME, help="train a model (any method) and write a run folder")
    p.add_argument("--config", help="TOML or YAML file of TrainConfig fields; flags override it")
    for flag, (fname, ftype) in _TRAIN_FLAGS.items():
        p.add_argument(flag, dest=fname, type=typed(flag, ftype), default=None,
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
    from robustlab.training import train
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
    cfg = configure(data, recipe, source=args.config or "command line")
    if on_rank0():
        print(f"recipe: {_recipe_line(cfg, recipe)}")
        _warn_unused_eps(cfg)
    if args.nproc > 1 and not launched_by_torchrun():
        return launch_torchrun(args.nproc, args.argv)
    callbacks = []
    if args.tensorboard and on_rank0():
        from robustlab.training.callbacks import TensorBoardLogger

        try:
            callbacks.append(TensorBoardLogger(args.tensorboard))
        except ImportError as err:
            raise CLIError(str(err)) from None
    result = train(cfg, resume=args.resume, overwrite=args.overwrite, callbacks=callbacks)
    for cb in callbacks:
        cb.close()
    if not on_rank0():
        return 0
    if result.summary["test_acc"] is not None:
        print(f"test accuracy: {result.summary['test_acc']:.4f}")
    health = result.summary.get("health", HEALTH_OK)
    if health == HEALTH_NON_FINITE:
        print(f"robustlab train: error: the training loss became non-finite (NaN or inf) at "
              f"epoch {result.summary.get('epochs_done')}; training stopped there. Lower --lr "
              "or check the data; the run folder records it", file=sys.stderr)
        return 1
    if health != HEALTH_OK:
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
