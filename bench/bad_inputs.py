"""A corpus of bad inputs, run and counted (issue #32's first target).

Target: over >= 400 bad inputs (CLI flags, config files, data files, run folders, checkpoints,
the attack API, the own-model API, `robustlab.train`): 0 silently accepted wrong results, 0
hangs, <= 5 tracebacks.

Each case runs in a forked child (isolation: monkeypatches, cwd, torch state; a hard timeout)
and gets one outcome:

  refused    CLI: exit status 2 and a line "robustlab CMD: error: ..." (argparse's included);
             API: an exception of robustlab's own (ConfigError, DataError, AttackError,
             RunFolderError, EvalSettingsError, ... or one of cli._user_errors()).
  warned     accepted, with a warning, where that is the documented behaviour (expected="warn").
  accepted   exit 0, or the input reached compute (which is cut off where it would begin, as in
             tests/test_cli_fuzz.py), or the API call returned: a bad input silently accepted.
  traceback  any other exception (or a crash of the child).
  unclear    a nonzero exit without a "robustlab CMD: error:" line.
  hang       the case ran past its timeout.

Compute is cut where it would begin for `train` (the first epoch, after any checkpoint is
restored), `evaluate RUN` (the attacks), `certify` and `reproduce`. `evaluate --model`, the
attack API, `robustlab.evaluate` and `robustlab.train` run for real on tiny models (4 images,
8x8 or 28x28): there the checks before compute are the point.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bad_inputs.py [--only CATEGORY] [--sample N]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import textwrap
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import torch
from torch import nn

# The data files the corpus damages are written by the tests' writers of the official formats.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import dataset_files  # noqa: E402

OUTCOMES = ("refused", "warned", "accepted", "traceback", "unclear", "hang")
TINY = "dataset_options={n_train: 64, n_test: 16}"


class ReachedCompute(Exception):
    """Raised where training / attacking would start: the input passed every check."""


def _stop(*args: Any, **kwargs: Any) -> None:
    raise ReachedCompute


CUTS = {  # module attribute -> what it cuts off
    "robustlab.training.loop._train_epoch": "train: the first epoch",
    "robustlab.evaluation.runs.evaluate_loaded_run": "evaluate RUN: the attacks",
    "robustlab.certification.study.certify_images": "certify: the sampling",
    "robustlab.experiments.runner.run_on_workers": "reproduce: the jobs",
}


@dataclass
class Case:
    category: str
    desc: str
    fn: Callable[[Any, Path], tuple[str, str]]  # (ctx, tmp) -> (outcome, output tail)
    expected: str = "refuse"  # or "warn": accepted with a warning is right
    timeout: float = 60.0


@dataclass
class Ctx:
    """What the cases share: one trained run and friends, built once by `setup`."""

    root: Path
    fields: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# running one case


def _user_errors() -> tuple[type[BaseException], ...]:
    from robustlab.cli import _user_errors

    return _user_errors()


def _is_robustlab_error(err: BaseException) -> bool:
    return isinstance(err, _user_errors()) or type(err).__module__.startswith("robustlab")


def _patch_cuts() -> None:
    import importlib

    for target in CUTS:
        module, attr = target.rsplit(".", 1)
        setattr(importlib.import_module(module), attr, _stop)


def run_cli(argv: list[str], cut: bool = True) -> tuple[str, str]:
    from robustlab.cli import main

    if cut:
        _patch_cuts()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        except ReachedCompute:
            return "accepted", err.getvalue() + "[reached compute]"
        except Exception:  # noqa: BLE001 - the point: any other exception is a traceback
            return "traceback", err.getvalue() + traceback.format_exc()
    text = err.getvalue()
    if code == 0:
        return "accepted", text + "[exit 0]"
    cmd = argv[0] if argv and not argv[0].startswith("-") else ""
    lines = [ln for ln in text.splitlines()
             if ln.startswith(f"robustlab {cmd}".rstrip() + ": error:")
             or ln.startswith("robustlab: error:")]
    if code == 2 and lines and "Traceback" not in text:
        return "refused", lines[-1]
    return "unclear", f"{text}[exit {code}]"


def run_api(call: Callable[[], Any]) -> tuple[str, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            call()
        except Exception as exc:  # noqa: BLE001
            if _is_robustlab_error(exc):
                return "refused", f"{type(exc).__name__}: {exc}"
            return "traceback", err.getvalue() + traceback.format_exc()
    return "accepted", err.getvalue() + "[returned]"


def _child(case: Case, ctx: Ctx, tmp: Path, wfd: int) -> None:
    os.chdir(tmp)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        outcome, tail = case.fn(ctx, tmp)
        said = "warning" in tail.lower() or "note:" in tail.lower()
        if outcome == "accepted" and case.expected == "warn" and said:
            outcome = "warned"
    except BaseException:  # noqa: BLE001 - a setup or harness failure shows as a traceback
        outcome, tail = "traceback", "[harness] " + traceback.format_exc()
    data = json.dumps([outcome, tail[-3000:]]).encode()
    while data:
        data = data[os.write(wfd, data):]
    os._exit(0)


def run_case(case: Case, ctx: Ctx, timeout: float | None = None) -> tuple[str, str]:
    tmp = Path(tempfile.mkdtemp(dir=ctx.root, prefix="case-"))
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(rfd)
        _child(case, ctx, tmp, wfd)
    os.close(wfd)
    chunks, deadline = [], time.monotonic() + (timeout or case.timeout)
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([rfd], [], [], max(left, 0))
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(rfd)
            shutil.rmtree(tmp, ignore_errors=True)
            return "hang", f"[no result after {timeout or case.timeout:.0f} s]"
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(tmp, ignore_errors=True)
    if not chunks:
        return "traceback", f"[child died, wait status {status}]"
    outcome, tail = json.loads(b"".join(chunks))
    return outcome, tail


# ------------------------------------------------------------------------------------------
# case builders


def _subst(items: list[str], fields: dict[str, str]) -> list[str]:
    return [Template(a).safe_substitute(fields) for a in items]


def cli(category: str, desc: str, argv: list[str], *,
        setup: Callable[[Ctx, Path], dict[str, str] | None] | None = None,
        cut: bool = True, expected: str = "refuse", timeout: float = 60.0) -> Case:
    """A CLI case; `$run`, `$tmp`, ... in `argv` are filled from ctx.fields and `setup`."""
    def fn(ctx: Ctx, tmp: Path) -> tuple[str, str]:
        fields = dict(ctx.fields, tmp=str(tmp))
        if setup is not None:
            fields.update(setup(ctx, tmp) or {})
        return run_cli(_subst(argv, fields), cut=cut)

    return Case(category, desc, fn, expected, timeout)


def api(category: str, desc: str, call: Callable[[Ctx, Path], Any], *,
        expected: str = "refuse", timeout: float = 60.0) -> Case:
    return Case(category, desc, lambda ctx, tmp: run_api(lambda: call(ctx, tmp)), expected,
                timeout)


def train_cli(extra: list[str]) -> list[str]:
    return ["train", "--dataset", "synthetic", "--set", TINY, "--no-progress", "--recipe",
            "none", "--device", "cpu", *extra, "--out", "$tmp/run"]


# ------------------------------------------------------------------------------------------
# train flags

TRAIN_BAD_VALUES: dict[str, list[str]] = {
    "--eps": ["nan", "inf", "-inf", "-0.1", "2", "1e9", "abc", "", "1/255"],
    "--lr": ["nan", "inf", "-1", "0", "abc", "1e999", ""],
    "--momentum": ["5", "-0.1", "1", "nan", "inf"],
    "--weight-decay": ["-1", "nan", "inf", "x"],
    "--epochs": ["0", "-1", "1.5", "x", str(2**70), "1e3"],
    "--batch-size": ["0", "-1", "x", str(2**40), "1.0"],
    "--seed": ["-1", str(2**70), "x", "1.5"],
    "--threads": ["1000", "0", "-1", "x", "1.5"],
    "--val-size": ["-5", "100000", "x", "1.5"],
    "--train-size": ["0", "-1", str(10**9), "x"],
    "--eps-warmup": ["-1", "nan", "inf", "x"],
    "--eps-warmup-start": ["2", "-0.1", "nan"],
    "--eps-warmup-schedule": ["zigzag", ""],
    "--noise-sigma": ["-1", "nan", "inf"],
    "--norm": ["l3", "", "linfinity", "l1"],
    "--dataset": ["nope", "", "../synthetic"],
    "--model": ["resnet9000", "", "lenet5;rm"],
    "--method": ["nope", ""],
    "--optimizer": ["lbfgs", ""],
    "--lr-schedule": ["bogus", ""],
    "--device": ["tpu", "cuda:7", "bogus", "cpu:x", "cuda"],
    "--augment": ["weird", ""],
    "--memory-format": ["sideways"],
    "--amp": ["fp8", "fp16", "yes"],
    "--recipe": ["bogus"],
    "--defense": ["nope"],
    "--nproc": ["0", "-1", "x"],
}
TRAIN_BAD_SETS = ["nosuch=1", "epochs=x", "lr=", "=3", "lr", "progress=maybe",
                  "dataset_options=5", "method_options=[1]", "dataset_options={n_train: -1}",
                  "eps=.nan", "compile=2", f"seed={2**70}", "threads=1000", "epochs=[1]",
                  "batch_size=1e3", "eps='0.1'", "out_dir=5", "dataset_options={nosuch: 1}",
                  "dataset_options={n_train: 64, n_test: 0}", "lr=true"]
TRAIN_BAD_OPTS = ["bogus=1", "k=-1", "k=nan", "k", "k=1.5", "k=true", "k=0", "step_size=-1",
                  "random_start=maybe"]
TRAIN_BAD_DEFENSE = [("median", "size=-3"), ("jpeg", "quality=500"), ("bit-depth", "bits=0"),
                     ("jpeg", "quality=x"), ("median", "nosuch=1"), ("median", "size")]
TRAIN_BAD_ARGV = {
    "abbreviation --epoch": ["--epoch", "1"], "abbreviation --batch": ["--batch", "32"],
    "abbreviation --lr-sched": ["--lr-sched", "cosine"], "abbreviation --mom": ["--mom", "0.9"],
    "abbreviation --eps-warm": ["--eps-warm", "1"], "unknown flag --nosuch": ["--nosuch"],
    "unknown flag --learning-rate": ["--learning-rate", "0.1"], "stray positional": ["extra"],
    "flag without value --lr": ["--lr"], "adversarial method without --eps":
        ["--method", "pgd-at"], "--eps-warmup longer than training": ["--method", "pgd-at",
                                                                       "--eps", "0.1",
                                                                       "--eps-warmup", "50"],
    "--resume and --overwrite together": ["--resume", "--overwrite"],
    "--config missing file": ["--config", "$tmp/nope.yaml"],
    "--tensorboard into a file": ["--tensorboard", "$cfgfile"],
}


def train_flag_cases() -> list[Case]:
    cases = [cli("train flags", f"{flag} {v!r}", train_cli([flag, v]))
             for flag, values in TRAIN_BAD_VALUES.items() for v in values]
    cases += [cli("train flags", f"--set {s!r}", train_cli(["--set", s])) for s in TRAIN_BAD_SETS]
    cases += [cli("train flags", f"--method pgd-at --opt {o!r}",
                  train_cli(["--method", "pgd-at", "--eps", "0.1", "--opt", o]))
              for o in TRAIN_BAD_OPTS]
    cases += [cli("train flags", f"--defense {d} --defense-opt {o!r}",
                  train_cli(["--defense", d, "--defense-opt", o])) for d, o in TRAIN_BAD_DEFENSE]
    cases.append(cli("train flags", "--defense-opt without --defense",
                     train_cli(["--defense-opt", "size=3"])))
    cases += [cli("train flags", desc, train_cli(extra), setup=_cfgfile_setup)
              for desc, extra in TRAIN_BAD_ARGV.items()]
    cases += [cli("train flags", f"--data-dir {desc} (mnist)",
                  ["train", "--dataset", "mnist", "--data-dir", where, "--no-progress", "--out",
                   "$tmp/run"], setup=_cfgfile_setup)
              for desc, where in (("a file", "$cfgfile"), ("missing", "$tmp/nodata"))]
    cases += [cli("train flags", "--eps 0.5 for standard training (unused budget)",
                  train_cli(["--eps", "0.5"]), expected="warn")]
    return cases + train_out_cases()


def _cfgfile_setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
    (tmp / "file.txt").write_text("x")
    return {"cfgfile": str(tmp / "file.txt")}


def _out_setup(kind: str) -> Callable[[Ctx, Path], dict[str, str]]:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        target = tmp / "target"
        if kind == "file":
            target.write_text("precious")
        elif kind == "home-like":
            (target / "sub").mkdir(parents=True)
            (target / "notes.txt").write_text("precious")
        elif kind in ("run", "run-with-sub"):
            shutil.copytree(ctx.fields["run"], target)
            if kind == "run-with-sub":
                (target / "sub").mkdir()
                (target / "sub" / "precious.txt").write_text("x")
        return {"target": "/proc/robustlab-run" if kind == "unwritable" else str(target)}

    return setup


def train_out_cases() -> list[Case]:
    base = ["train", "--dataset", "synthetic", "--set", TINY, "--no-progress", "--recipe",
            "none", "--device", "cpu", "--out", "$target"]
    items = [("file", [], "--out names a file"),
             ("file", ["--overwrite"], "--out names a file, --overwrite"),
             ("home-like", ["--overwrite"], "--overwrite of a non-run folder"),
             ("home-like", [], "--out a non-empty non-run folder"),
             ("run", [], "--out an existing finished run, no --overwrite/--resume"),
             ("run-with-sub", ["--overwrite"], "--overwrite of a run folder holding a sub-folder"),
             ("unwritable", [], "--out under /proc (unwritable, even for root)")]
    cases = [cli("train flags", desc, base + extra, setup=_out_setup(kind))
             for kind, extra, desc in items]
    for flag, value in (("--lr", "0.5"), ("--seed", "7"), ("--batch-size", "16")):
        args = _changed(ctx_train_args(["--resume"], out="$target"), "--epochs", "1")
        cases.append(cli("train flags", f"--resume of a finished run with {flag} {value}",
                         _changed(args, flag, value), setup=_out_setup("run")))
    return cases


def _changed(args: list[str], flag: str, value: str) -> list[str]:
    i = args.index(flag)
    return args[:i + 1] + [value] + args[i + 2:]


# ------------------------------------------------------------------------------------------
# config files

CONFIG_TEXTS: dict[str, tuple[str, str]] = {
    "YAML broken bracket": (".yaml", "epochs: [1\n"),
    "YAML bad indentation": (".yaml", "epochs: 1\n  lr: 0.1\n"),
    "YAML duplicate key": (".yaml", "epochs: 1\nepochs: 2\n"),
    "YAML tab indentation": (".yaml", "dataset_options:\n\tn_train: 64\n"),
    "YAML python tag": (".yaml", "epochs: !!python/object/apply:os.system ['true']\n"),
    "YAML anchors bomb": (".yaml", "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\n"
                                   "c: &c [*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c]\n"),
    "YAML two documents": (".yaml", "epochs: 1\n---\nepochs: 2\n"),
    "YAML top-level list": (".yaml", "- epochs\n- 1\n"),
    "YAML top-level scalar": (".yaml", "5\n"),
    "YAML empty": (".yaml", ""),
    "YAML eps string": (".yaml", "eps: '0.3'\nmethod: pgd-at\n"),
    "YAML eps .nan": (".yaml", "eps: .nan\nmethod: pgd-at\n"),
    "YAML epochs string": (".yaml", "epochs: '5'\n"),
    "YAML epochs float": (".yaml", "epochs: 1.5\n"),
    "YAML seed bool": (".yaml", "seed: true\n"),
    "YAML progress 'yes' string": (".yaml", "progress: 'yes'\n"),
    "YAML lr list": (".yaml", "lr: [0.1]\n"),
    "YAML dataset_options scalar": (".yaml", "dataset_options: 5\n"),
    "YAML unknown field": (".yaml", "nosuch: 1\n"),
    "YAML misspelled field Epochs": (".yaml", "Epochs: 5\n"),
    "YAML method_options unknown": (".yaml", "method: pgd-at\neps: 0.1\n"
                                             "method_options: {kk: 2}\n"),
    "YAML train table wrong type": (".yaml", "train: 5\n"),
    "YAML null dataset": (".yaml", "dataset: null\n"),
    "YAML date value": (".yaml", "seed: 2024-01-01\n"),
    "TOML broken": (".toml", "epochs = \n"),
    "TOML duplicate key": (".toml", "epochs = 1\nepochs = 2\n"),
    "TOML string eps": (".toml", 'eps = "0.3"\nmethod = "pgd-at"\n'),
    "TOML inf lr": (".toml", "lr = inf\n"),
    "TOML unknown table": (".toml", "[nosuch]\nx = 1\n"),
    "TOML datetime seed": (".toml", "seed = 1979-05-27\n"),
    "JSON text in .yaml: broken": (".yaml", '{"epochs": 1'),
    "JSON text in .yaml: duplicate key": (".yaml", '{"epochs": 1, "epochs": 2}'),
    "JSON text in .yaml: NaN": (".yaml", '{"lr": NaN}'),
    "JSON text in .yaml: top-level list": (".yaml", "[1, 2]"),
    "JSON text in .yaml: epochs huge": (".yaml", '{"epochs": 1e400}'),
    "unknown suffix .txt": (".txt", "epochs: 1\n"),
    "suffix .json": (".json", '{"epochs": 1}'),
    "binary garbage .yaml": (".yaml", "\x00\x01\x02\xff"),
    "not UTF-8 .yaml": (".yaml", "B"),  # replaced by latin-1 bytes below
}


def _config_case(desc: str, suffix: str, text: str) -> Case:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        path = tmp / f"cfg{suffix}"
        if desc == "not UTF-8 .yaml":
            path.write_bytes("dataset: caf\xe9\n".encode("latin-1"))
        elif desc == "binary garbage .yaml":
            path.write_bytes(bytes(range(256)))
        else:
            path.write_text(text)
        return {"cfg": str(path)}

    argv = ["train", "--config", "$cfg", "--device", "cpu", "--out", "$tmp/run"]
    for key, flags in (("dataset", ["--dataset", "synthetic"]), ("dataset_options",
                       ["--set", TINY]), ("progress", ["--no-progress"])):
        if key not in text:  # flags override the file: give only those the file lacks
            argv[1:1] = flags
    return cli("config files", desc, argv, setup=setup,
               expected="warn" if desc == "YAML empty" else "refuse")


def config_cases() -> list[Case]:
    cases = [_config_case(d, s, t) for d, (s, t) in CONFIG_TEXTS.items()]
    cases.append(cli("config files", "--config is a directory",
                     ["train", "--config", "$tmp", "--out", "$tmp/run"]))
    return cases


# ------------------------------------------------------------------------------------------
# evaluate flags (a trained run)

EVAL_BAD: dict[str, list[str]] = {
    "--eps": ["2", "-1", "nan", "inf", "x", "1.0001"],
    "--norm": ["l3", "", "l1"],
    "--n": ["0", "-1", "100000", "x"],
    "--batch-size": ["0", "-3", "x"],
    "--attacks": ["nope", ",", "fgsm,nope", "pgd;square"],
    "--seed": ["-1", str(2**70)],
    "--device": ["bogus", "cuda", "tpu"],
    "--nproc": ["0", "x"],
}
EVAL_BAD_OPTS = ["pgd.steps=0", "pgd.steps=-1", "pgd.steps=x", "pgd.nosuch=1", "nope.steps=1",
                 "steps=1", "pgd.", "pgd.steps", "pgd.restarts=nan", "fgsm.steps=10",
                 "pgd.random_start=maybe", "pgd.eps=0.5", "pgd.step_size=-1",
                 "autoattack.version=bogus", "square.n_queries=0", "pgd.steps=1.5"]


def eval_cli(extra: list[str]) -> list[str]:
    return ["evaluate", "$run", "--attacks", "fgsm,pgd", "--n", "4", "--no-progress",
            "--device", "cpu", *extra, "--out", "$tmp/e.json"]


def _fresh_run(ctx: Ctx, tmp: Path) -> dict[str, str]:
    shutil.copytree(ctx.fields["run"], tmp / "r1")
    (tmp / "r1" / "eval.json").unlink()
    return {}


def evaluate_flag_cases() -> list[Case]:
    cases = [cli("evaluate flags", f"{flag} {v!r}", eval_cli([flag, v]))
             for flag, values in EVAL_BAD.items() for v in values]
    cases += [cli("evaluate flags", f"--attack-opt {o!r}",
                  eval_cli(["--attack-opt", o] + (["--attacks", o.split(".")[0]] if
                                                  o.startswith(("square", "autoattack")) else [])))
              for o in EVAL_BAD_OPTS]
    cases += [
        cli("evaluate flags", "--norm l2 --eps 1000", eval_cli(["--norm", "l2", "--eps", "1000"])),
        cli("evaluate flags", "--norm l2 --eps 29 (beyond the 28x28 cube's diagonal)",
            eval_cli(["--norm", "l2", "--eps", "29"])),
        cli("evaluate flags", "missing run folder",
            ["evaluate", "$tmp/nope", "--out", "$tmp/e.json"]),
        cli("evaluate flags", "one good run, one missing",
            ["evaluate", "$tmp/r1", "$tmp/nope"], setup=_fresh_run),
        cli("evaluate flags", "neither run nor --model", ["evaluate"]),
        cli("evaluate flags", "a run and --model", ["evaluate", "$run", "--model", "x.py:f"]),
        cli("evaluate flags", "--weights without --model", ["evaluate", "$run", "--weights",
                                                            "w.safetensors"]),
        cli("evaluate flags", "--out an existing file, no --overwrite",
            ["evaluate", "$run", "--n", "4", "--out", "$tmp/old.json"],
            setup=lambda ctx, tmp: (tmp / "old.json").write_text("{}") and None),
        cli("evaluate flags", "--out a directory", ["evaluate", "$run", "--n", "4", "--out",
                                                    "$tmp"]),
        cli("evaluate flags", "--save-adv a file", eval_cli(["--save-adv", "$cfgfile"]),
            setup=_cfgfile_setup),
        cli("evaluate flags", "a file instead of a run folder", ["evaluate", "$cfgfile"],
            setup=_cfgfile_setup),
        cli("evaluate flags", "--eps 0.1 with --norm l2 given twice",
            eval_cli(["--norm", "l2", "--norm", "l3"])),
    ]
    return cases


# ------------------------------------------------------------------------------------------
# evaluate --model (own model; runs for real on the synthetic dataset, 4 images)

MODEL_HEAD = "import torch\nfrom torch import nn\n\n"
GOOD_NET = "nn.Sequential(nn.Flatten(), nn.Linear(784, 10))"


def _wrapping(ret: str) -> str:
    """A model file whose M wraps the good net and returns `ret` (an expression)."""
    return ("class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            f"        self.f = {GOOD_NET}\n    def forward(self, x):\n"
            f"        return {ret}\n\ndef make():\n    return M()\n")


OWN_MODELS: dict[str, str] = {
    "syntax error": "def make(:\n    pass\n",
    "factory raises": "def make():\n    raise RuntimeError('boom')\n",
    "factory needs an argument": f"def make(width):\n    return {GOOD_NET}\n",
    "factory is not callable": "make = 5\n",
    "factory returns None": "def make():\n    return None\n",
    "factory returns a tensor": "def make():\n    return torch.zeros(3)\n",
    "factory returns a plain function": "def make():\n    return lambda x: x\n",
    "factory returns the class": "def make():\n    return nn.Linear\n",
    "module imports a missing package": "import no_such_pkg_xyz\n\ndef make():\n    pass\n",
    "output is a tuple": _wrapping("self.f(x), x"),
    "output is a dict": "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                        f"        self.f = {GOOD_NET}\n    def forward(self, x):\n"
                        "        return {'logits': self.f(x)}\n\ndef make():\n    return M()\n",
    "output is 1-D": "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1), "
                     "nn.Flatten(0))\n",
    "output [N, 10, 1]": "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10),"
                         " nn.Unflatten(1, (10, 1)))\n",
    "fp16 output": "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                   f"        self.f = {GOOD_NET}\n    def forward(self, x):\n"
                   "        return self.f(x).half()\n\ndef make():\n    return M()\n",
    "NaN output": "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                  f"        self.f = {GOOD_NET}\n    def forward(self, x):\n"
                  "        return self.f(x) * float('nan')\n\ndef make():\n    return M()\n",
    "constant output": "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                       "        self.b = nn.Parameter(torch.zeros(10))\n    def forward(self, x):\n"
                       "        return self.b.expand(len(x), 10)\n\ndef make():\n    return M()\n",
    "5-class model on 10-class data": "def make():\n    return nn.Sequential(nn.Flatten(), "
                                      "nn.Linear(784, 5))\n",
    "1-class model": "def make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1))\n",
    "3-channel conv on 1-channel data": "def make():\n    return nn.Sequential(nn.Conv2d(3, 4, 3),"
                                        " nn.Flatten(), nn.LazyLinear(10))\n",
    "32x32 model on 28x28 data": "def make():\n    return nn.Sequential(nn.Flatten(), "
                                 "nn.Linear(1024, 10))\n",
    "integer (argmax) output": _wrapping("self.f(x).argmax(1)"),
    "forward under torch.no_grad": "class M(nn.Module):\n    def __init__(self):\n"
                                   "        super().__init__()\n"
                                   f"        self.f = {GOOD_NET}\n    def forward(self, x):\n"
                                   "        with torch.no_grad():\n            return self.f(x)\n"
                                   "\ndef make():\n    return M()\n",
    "forward raises": "class M(nn.Module):\n    def forward(self, x):\n"
                      "        raise RuntimeError('model is broken')\n\ndef make():\n"
                      "    return M()\n",
    "output has twice the rows": "class M(nn.Module):\n    def __init__(self):\n"
                                 "        super().__init__()\n"
                                 f"        self.f = {GOOD_NET}\n    def forward(self, x):\n"
                                 "        return torch.cat([self.f(x), self.f(x)])\n\n"
                                 "def make():\n    return M()\n",
    "softmax (probability) output": "def make():\n    return nn.Sequential(nn.Flatten(), "
                                    "nn.Linear(784, 10), nn.Softmax(1))\n",
}
OWN_MODEL_WARN = {"softmax (probability) output", "constant output", "fp16 output"}


def _own_setup(source: str | None = None, weights: str | None = None
               ) -> Callable[[Ctx, Path], dict[str, str]]:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        good = f"def make():\n    return {GOOD_NET}\n"
        (tmp / "net.py").write_text(MODEL_HEAD + (source or good))
        w = tmp / _weights_name(weights or "")
        if weights is not None:
            _write_weights(w, weights)
        return {"net": str(tmp / "net.py"), "w": str(w)}

    return setup


def _weights_name(kind: str) -> str:
    return "w.pt" if kind.startswith("pickled") else "w.safetensors"


def _write_weights(path: Path, kind: str) -> None:
    from safetensors.torch import save_file

    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    state = net.state_dict()
    if kind == "wrong keys":
        save_file({"x." + k: v for k, v in state.items()}, str(path))
    elif kind == "wrong shapes":
        save_file({k: torch.zeros(*[s + 1 for s in v.shape]) for k, v in state.items()},
                  str(path))
    elif kind == "missing a key":
        save_file({"1.weight": state["1.weight"]}, str(path))
    elif kind == "NaN weights":
        save_file({k: torch.full_like(v, float("nan")) for k, v in state.items()}, str(path))
    elif kind == "pickled code (torch.save of a module)":
        torch.save(net, str(path))
    elif kind == "garbage bytes":
        path.write_bytes(os.urandom(300))
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "truncated safetensors":
        buf = io.BytesIO()
        save_file(state, str(path))
        path.write_bytes(path.read_bytes()[:200])
        del buf


def own_cli(extra: list[str], spec: str = "$net:make") -> list[str]:
    return ["evaluate", "--model", spec, "--dataset", "synthetic", "--eps", "0.1", "--n", "4",
            "--attacks", "fgsm", "--no-audit", "--no-curve", "--no-progress", "--device", "cpu",
            *extra, "--out", "$tmp/e.json"]


WEIGHT_KINDS = ["wrong keys", "wrong shapes", "missing a key", "NaN weights",
                "pickled code (torch.save of a module)", "garbage bytes", "empty file",
                "truncated safetensors"]


def own_model_cli_cases() -> list[Case]:
    cases = [cli("evaluate --model", desc, own_cli([]), setup=_own_setup(src), cut=False,
                 expected="warn" if desc in OWN_MODEL_WARN else "refuse")
             for desc, src in OWN_MODELS.items()]
    cases += [cli("evaluate --model", f"--weights: {kind}", own_cli(["--weights", "$w"]),
                  setup=_own_setup(weights=kind), cut=False) for kind in WEIGHT_KINDS]
    more = [
        ("missing file", [], "$tmp/nope.py:make"),
        ("factory not in file", [], "$net:nosuch"),
        ("no factory, .py file", [], "$net"),
        ("garbage TorchScript .pt", [], "$w"),
        ("--weights missing file", ["--weights", "$tmp/nope.safetensors"], "$net:make"),
        ("--normalize 3 channels on 1-channel data", ["--normalize", "0.5,0.5,0.5",
                                                      "0.2,0.2,0.2"], "$net:make"),
        ("--normalize std 0", ["--normalize", "0.5", "0"], "$net:make"),
        ("--normalize not numbers", ["--normalize", "a", "b"], "$net:make"),
        ("--normalize nan", ["--normalize", "nan", "0.3"], "$net:make"),
        ("--normalize mean/std lengths differ", ["--normalize", "0.5,0.5", "0.3"], "$net:make"),
        ("--dataset nope", ["--dataset", "nope"], "$net:make"),
        ("--eps 2", ["--eps", "2"], "$net:make"),
        ("--n beyond the test set", ["--n", "100000"], "$net:make"),
        ("--attacks nope", ["--attacks", "nope"], "$net:make"),
        ("--norm l2 --eps 1000", ["--norm", "l2", "--eps", "1000"], "$net:make"),
        ("--norm l3", ["--norm", "l3"], "$net:make"),
        ("--attack-opt fgsm.eps=0.5 (a second budget)", ["--attack-opt", "fgsm.eps=0.5"],
         "$net:make"),
        ("--save-adv a file", ["--save-adv", "$net"], "$net:make"),
    ]
    for desc, extra, spec in more:
        setup = _own_setup(weights="garbage bytes") if "TorchScript" in desc else _own_setup()
        if desc == "garbage TorchScript .pt":
            spec = "$tmp/m.pt"
            setup = _pt_setup
        cases.append(cli("evaluate --model", desc, own_cli(extra, spec), setup=setup, cut=False))
    cases.append(cli("evaluate --model", "--eps missing",
                     ["evaluate", "--model", "$net:make", "--dataset", "synthetic", "--out",
                      "$tmp/e.json"], setup=_own_setup(), cut=False))
    cases.append(cli("evaluate --model", "--dataset missing",
                     ["evaluate", "--model", "$net:make", "--eps", "0.1", "--out",
                      "$tmp/e.json"], setup=_own_setup(), cut=False))
    return cases


def _pt_setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
    (tmp / "m.pt").write_bytes(os.urandom(500))
    return {}


# ------------------------------------------------------------------------------------------
# certify, reproduce, report, export

CERTIFY_BAD: list[tuple[str, list[str]]] = [
    ("--sigma 0", ["--sigma", "0"]), ("--sigma -1", ["--sigma", "-1"]),
    ("--sigma 1e6", ["--sigma", "1e6"]), ("--sigma nan", ["--sigma", "nan"]),
    ("--sigma inf", ["--sigma", "inf"]), ("--sigma x", ["--sigma", "x"]),
    ("no --sigma on a run trained without noise", []),
    ("--n < --n0", ["--sigma", "0.25", "--n", "10", "--n0", "100"]),
    ("--n 0", ["--sigma", "0.25", "--n", "0"]), ("--n0 0", ["--sigma", "0.25", "--n0", "0"]),
    ("--alpha 0", ["--sigma", "0.25", "--alpha", "0"]),
    ("--alpha 1", ["--sigma", "0.25", "--alpha", "1"]),
    ("--alpha -0.1", ["--sigma", "0.25", "--alpha", "-0.1"]),
    ("--alpha 1.5", ["--sigma", "0.25", "--alpha", "1.5"]),
    ("--alpha nan", ["--sigma", "0.25", "--alpha", "nan"]),
    ("--images 0", ["--sigma", "0.25", "--images", "0"]),
    ("--images -1", ["--sigma", "0.25", "--images", "-1"]),
    ("--images beyond the test set", ["--sigma", "0.25", "--images", "100000"]),
    ("--batch-size 0", ["--sigma", "0.25", "--batch-size", "0"]),
    ("--out a directory", ["--sigma", "0.25", "--out", "$tmp"]),
    ("--seed -1", ["--sigma", "0.25", "--seed", "-1"]),
]


def certify_cases() -> list[Case]:
    cases = [cli("certify", desc, ["certify", "$run", "--no-progress", "--device", "cpu",
                                   "--no-figure", *(["--images", "4"] if "--images" not in extra
                                                    else []), *extra] + ([] if "--out" in extra else
                                                            ["--out", "$tmp/c.json"]),
                 expected="warn" if desc == "--n < --n0" else "refuse")
             for desc, extra in CERTIFY_BAD]
    cases.append(cli("certify", "missing run folder", ["certify", "$tmp/nope", "--sigma",
                                                       "0.25"]))
    return cases


def _file_setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
    (tmp / "afile").write_text("x")
    (tmp / "stuff" / "sub").mkdir(parents=True)
    (tmp / "stuff" / "notes.txt").write_text("precious")
    return {"afile": str(tmp / "afile"), "stuff": str(tmp / "stuff")}


def reproduce_cases() -> list[Case]:
    base = ["reproduce", "--preset", "smoke", "--no-report", "--data-dir", "$mnist",
            "--device", "cpu"]
    items = [("unknown preset", ["reproduce", "--preset", "nope"]),
             ("--workers 0", base + ["--workers", "0", "--out", "$tmp/x"]),
             ("--workers -1", base + ["--workers", "-1", "--out", "$tmp/x"]),
             ("--workers 1000", base + ["--workers", "1000", "--out", "$tmp/x"]),
             ("--workers x", base + ["--workers", "x", "--out", "$tmp/x"]),
             ("--threads -1", base + ["--threads", "-1", "--out", "$tmp/x"]),
             ("--threads 0", base + ["--threads", "0", "--out", "$tmp/x"]),
             ("--threads 1000", base + ["--threads", "1000", "--out", "$tmp/x"]),
             ("--out a file", base + ["--out", "$afile"]),
             ("--out a non-experiment folder", base + ["--out", "$stuff"]),
             ("--out a non-experiment folder, --overwrite", base + ["--out", "$stuff",
                                                                   "--overwrite"]),
             ("--device bogus", ["reproduce", "--preset", "smoke", "--device", "bogus",
                                 "--out", "$tmp/x"]),
             ("--executor nope", base + ["--executor", "nope", "--out", "$tmp/x"]),
             ("--model nope", base + ["--model", "nope", "--out", "$tmp/x"]),
             ("--data-dir a file", ["reproduce", "--preset", "smoke", "--data-dir", "$afile",
                                    "--out", "$tmp/x"])]
    return [cli("reproduce", desc, argv, setup=_file_setup,
                expected="warn" if desc == "--workers 1000" else "refuse")
            for desc, argv in items]


def _edited_eval(edit: Callable[[dict], None], redigest: bool = True
                 ) -> Callable[[Ctx, Path], dict[str, str]]:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        from robustlab.common.digest import DIGEST_FIELD, with_digest

        exp = tmp / "exp"
        shutil.copytree(ctx.fields["run"], exp / "run")
        data = json.loads((exp / "run" / "eval.json").read_text())
        data.pop(DIGEST_FIELD, None)
        edit(data)
        if redigest:
            data = with_digest(data)
        (exp / "run" / "eval.json").write_text(json.dumps(data))
        return {"exp": str(exp)}

    return setup


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        *keys, last = path.split(".")
        node = data
        for k in keys:
            node = node[k]
        node[last] = value

    return edit


REPORT_EDITS: list[tuple[str, Callable[[dict], None], bool]] = [
    ("clean acc 1.5 (digest recomputed)", _set("clean.acc", 1.5), True),
    ("clean acc 'high' (digest recomputed)", _set("clean.acc", "high"), True),
    ("clean acc -0.2 (digest recomputed)", _set("clean.acc", -0.2), True),
    ("clean acc null (digest recomputed)", _set("clean.acc", None), True),
    ("fgsm acc 1.5 (digest recomputed)", _set("attacks.fgsm.acc", 1.5), True),
    ("n 0 (digest recomputed)", _set("n", 0), True),
    ("n 'many' (digest recomputed)", _set("n", "many"), True),
    ("attacks a list (digest recomputed)", _set("attacks", [1, 2]), True),
    ("schema unknown (digest recomputed)", _set("schema", "robustlab.eval/99"), True),
    ("clean acc 1.5 (stale digest)", _set("clean.acc", 1.5), False),
    ("robust acc above clean (digest recomputed)", _set("attacks.fgsm.acc", 1.0), True),
]


def report_cases() -> list[Case]:
    cases = [cli("report", desc, ["report", "$exp"], setup=_edited_eval(edit, redigest),
                 cut=False) for desc, edit, redigest in REPORT_EDITS]
    cases += [
        cli("report", "empty folder", ["report", "$tmp"], cut=False),
        cli("report", "missing folder", ["report", "$tmp/nope"], cut=False),
        cli("report", "a file", ["report", "$afile"], setup=_file_setup, cut=False),
        cli("report", "eval.json not JSON", ["report", "$exp"], cut=False,
            setup=_damaged_eval(b"{\"clean\": ")),
        cli("report", "eval.json empty", ["report", "$exp"], cut=False,
            setup=_damaged_eval(b"")),
        cli("report", "eval.json a JSON list", ["report", "$exp"], cut=False,
            setup=_damaged_eval(b"[1, 2, 3]")),
        cli("report", "eval.json with NaN", ["report", "$exp"], cut=False,
            setup=_damaged_eval(b'{"schema": "robustlab.eval/1", "clean": {"acc": NaN}}')),
    ]
    return cases


def _damaged_eval(content: bytes) -> Callable[[Ctx, Path], dict[str, str]]:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        exp = tmp / "exp"
        shutil.copytree(ctx.fields["run"], exp / "run")
        (exp / "run" / "eval.json").write_bytes(content)
        return {"exp": str(exp)}

    return setup


def export_cases() -> list[Case]:
    def unfinished(ctx: Ctx, tmp: Path) -> dict[str, str]:
        shutil.copytree(ctx.fields["unfinished"], tmp / "run")
        return {"r": str(tmp / "run")}

    def copy(ctx: Ctx, tmp: Path) -> dict[str, str]:
        shutil.copytree(ctx.fields["run"], tmp / "run")
        (tmp / "old.pt").write_text("precious")
        return {"r": str(tmp / "run")}

    return [
        cli("export", "unfinished run", ["export", "$r", "--out", "$tmp/m.pt"], setup=unfinished,
            cut=False, expected="warn"),
        cli("export", "--format bogus", ["export", "$run", "--format", "bogus", "--out",
                                         "$tmp/m.pt"], cut=False),
        cli("export", "--out exists, no --overwrite", ["export", "$r", "--out", "$tmp/old.pt"],
            setup=copy, cut=False),
        cli("export", "--out a directory", ["export", "$run", "--out", "$tmp"], cut=False),
        cli("export", "--out a directory, --overwrite", ["export", "$r", "--out", "$tmp/d",
                                                         "--overwrite"], cut=False,
            setup=lambda ctx, tmp: (copy(ctx, tmp), (tmp / "d" / "sub").mkdir(parents=True),
                                    (tmp / "d" / "precious.txt").write_text("x"))[0]),
        cli("export", "missing run", ["export", "$tmp/nope", "--out", "$tmp/m.pt"], cut=False),
        cli("export", "no --out", ["export", "$run"], cut=False),
        cli("export", "damaged weights", ["export", "$r", "--out", "$tmp/m.pt"],
            setup=_damaged_run("model: bit flip in data"), cut=False),
    ]


# ------------------------------------------------------------------------------------------
# run folders and checkpoints


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def _flip_in_header(path: Path) -> None:
    """Flip a bit in a tensor's name in the safetensors header (its key order varies from file
    to file, so a fixed offset would hit different fields)."""
    data = path.read_bytes()
    _flip(path, data.index(b"features.0.weight") + 3)


def _damage(run: Path, kind: str, ctx: Ctx) -> None:
    cfg, weights, summary = run / "config.json", run / "model.safetensors", run / "summary.json"
    cfg_data = json.loads(cfg.read_text())
    actions: dict[str, Callable[[], Any]] = {
        "config: missing": cfg.unlink,
        "config: truncated": lambda: cfg.write_bytes(cfg.read_bytes()[:40]),
        "config: not JSON": lambda: cfg.write_text("eps: 0.1"),
        "config: empty": lambda: cfg.write_text(""),
        "config: top-level list": lambda: cfg.write_text("[]"),
        "config: no train table": lambda: cfg.write_text('{"x": 1}'),
        "config: eps '0.3' (a string)": lambda: _edit_cfg(cfg, cfg_data, "eps", "0.3"),
        "config: epochs -1": lambda: _edit_cfg(cfg, cfg_data, "epochs", -1),
        "config: unknown field": lambda: _edit_cfg(cfg, cfg_data, "nosuch", 1),
        "config: model changed to smallcnn": lambda: _edit_cfg(cfg, cfg_data, "model", "smallcnn"),
        "config: NaN lr": lambda: cfg.write_text(cfg.read_text().replace('"lr": 0.05',
                                                                         '"lr": NaN')),
        "summary: not JSON": lambda: summary.write_text("{"),
        "summary: digest changed": lambda: _edit_summary_digest(summary),
        "metrics: damaged line": lambda: (run / "metrics.jsonl").write_text("{\"epoch\": 1,\n"),
        "model: missing": weights.unlink,
        "model: truncated": lambda: weights.write_bytes(weights.read_bytes()[:1000]),
        "model: bit flip in data": lambda: _flip(weights, weights.stat().st_size - 100),
        "model: bit flip in header": lambda: _flip_in_header(weights),
        "model: zero bytes": lambda: weights.write_bytes(b""),
        "model: another run's weights": lambda: shutil.copy(Path(ctx.fields["run2"]) /
                                                           "model.safetensors", weights),
        "model: foreign tensors": lambda: _foreign(weights),
        "model: a directory": lambda: (weights.unlink(), weights.mkdir()),
        "model: random bytes": lambda: weights.write_bytes(os.urandom(5000)),
        "model: a symlink to /dev/zero": lambda: (weights.unlink(),
                                                  weights.symlink_to("/dev/zero")),
    }
    actions[kind]()


RUN_DAMAGES = ["config: missing", "config: truncated", "config: not JSON", "config: empty",
               "config: top-level list", "config: no train table",
               "config: eps '0.3' (a string)", "config: epochs -1", "config: unknown field",
               "config: model changed to smallcnn", "config: NaN lr", "summary: not JSON",
               "summary: digest changed", "metrics: damaged line", "model: missing",
               "model: truncated", "model: bit flip in data", "model: bit flip in header",
               "model: zero bytes", "model: another run's weights", "model: foreign tensors",
               "model: a directory", "model: random bytes", "model: a symlink to /dev/zero"]


def _edit_cfg(path: Path, data: dict, key: str, value: Any) -> None:
    table = data["train"] if "train" in data else data
    table[key] = value
    path.write_text(json.dumps(data))


def _edit_summary_digest(path: Path) -> None:
    data = json.loads(path.read_text())
    for key in list(data):
        if "sha256" in key or "digest" in key:
            data[key] = "0" * 64
    path.write_text(json.dumps(data))


def _foreign(path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3, 3)}, str(path))


def _damaged_run(kind: str, source: str = "run") -> Callable[[Ctx, Path], dict[str, str]]:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        shutil.copytree(ctx.fields[source], tmp / "run")
        _damage(tmp / "run", kind, ctx)
        return {"r": str(tmp / "run")}

    return setup


def _load_model_damaged(kind: str) -> Callable[[Ctx, Path], Any]:
    def call(ctx: Ctx, tmp: Path) -> Any:
        import robustlab

        _damaged_run(kind)(ctx, tmp)
        return robustlab.load_model(tmp / "run", device="cpu")

    return call


CKPT_DAMAGES = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:2000]),
    "bit flip in data": lambda p: _flip(p, p.stat().st_size - 50),
    "bit flip in header": _flip_in_header,
    "zero bytes": lambda p: p.write_bytes(b""),
    "foreign tensors": _foreign,
    "random bytes": lambda p: p.write_bytes(os.urandom(4000)),
    "another run's checkpoint": None,
}


def _ckpt_setup(kind: str) -> Callable[[Ctx, Path], dict[str, str]]:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        shutil.copytree(ctx.fields["unfinished"], tmp / "run")
        ckpt = tmp / "run" / "checkpoint.safetensors"
        if kind == "another run's checkpoint":
            shutil.copy(Path(ctx.fields["unfinished2"]) / "checkpoint.safetensors", ckpt)
        else:
            CKPT_DAMAGES[kind](ckpt)
        return {"r": str(tmp / "run"), "args": ""}

    return setup


def run_folder_cases() -> list[Case]:
    ev = ["evaluate", "$r", "--attacks", "fgsm", "--n", "4", "--no-progress", "--device", "cpu",
          "--out", "$tmp/e.json"]
    cases = [cli("run folders", f"evaluate: {kind}", ev, setup=_damaged_run(kind))
             for kind in RUN_DAMAGES if not kind.startswith("metrics")]
    cases.append(cli("run folders", "report: metrics: damaged line", ["report", "$tmp"],
                     setup=_damaged_run_with_eval("metrics: damaged line"), cut=False))
    cases += [api("run folders", f"load_model: {kind}", _load_model_damaged(kind))
              for kind in RUN_DAMAGES if not kind.startswith("metrics")]
    resume = ctx_train_args(["--resume"])
    cases += [cli("checkpoints", f"train --resume: checkpoint {kind}", resume,
                  setup=_ckpt_setup(kind)) for kind in CKPT_DAMAGES]
    cases += [cli("checkpoints", "evaluate an unfinished run", ["evaluate", "$unfinished",
                                                                "--attacks", "fgsm", "--n", "4",
                                                                "--out", "$tmp/e.json"],
                  expected="warn"),
              cli("checkpoints", "train --resume: config edited (lr)", resume,
                  setup=_unfinished_edit("lr", 0.5)),
              cli("checkpoints", "train --resume: config eps a string", resume,
                  setup=_unfinished_edit("eps", "0.1")),
              cli("checkpoints", "train --resume: checkpoint missing, metrics say epoch 1",
                  resume, setup=_unfinished_rm("checkpoint.safetensors"), expected="warn"),
              cli("checkpoints", "train --resume: missing folder is new, fine but say so",
                  ctx_train_args(["--resume"], out="$tmp/new"), expected="warn")]
    return cases


def ctx_train_args(extra: list[str], out: str = "$r") -> list[str]:
    return ["train", "--dataset", "synthetic", "--model", "lenet5", "--method", "pgd-at",
            "--eps", "0.1", "--opt", "k=2", "--epochs", "2", "--batch-size", "32", "--lr",
            "0.05", "--set", "dataset_options={n_train: 192, n_test: 64}", "--seed", "0",
            "--recipe", "none", "--no-progress", "--threads", "1", "--device", "cpu",
            *extra, "--out", out]


def _unfinished_edit(key: str, value: Any) -> Callable[[Ctx, Path], dict[str, str]]:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        shutil.copytree(ctx.fields["unfinished"], tmp / "run")
        cfg = tmp / "run" / "config.json"
        _edit_cfg(cfg, json.loads(cfg.read_text()), key, value)
        return {"r": str(tmp / "run")}

    return setup


def _unfinished_rm(name: str) -> Callable[[Ctx, Path], dict[str, str]]:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        shutil.copytree(ctx.fields["unfinished"], tmp / "run")
        (tmp / "run" / name).unlink()
        return {"r": str(tmp / "run")}

    return setup


def _damaged_run_with_eval(kind: str) -> Callable[[Ctx, Path], dict[str, str]]:
    def setup(ctx: Ctx, tmp: Path) -> dict[str, str]:
        shutil.copytree(ctx.fields["run"], tmp / "run")  # holds eval.json (setup wrote it)
        _damage(tmp / "run", kind, ctx)
        return {}

    return setup


# ------------------------------------------------------------------------------------------
# data files


_idx = dataset_files.idx_bytes  # the tests' writers of the official formats


def _mnist_folder(folder: Path, gz: bool = True, **override: bytes) -> Path:
    dataset_files.write_idx_folder(folder / "mnist", n_train=40, n_test=20, gz=gz, **override)
    return folder


def _bomb() -> bytes:
    """A gzip stream of an IDX header announcing 4000 x 28 x 28 (3 MB: above the 1 MB cap the
    case sets) followed by zeros: 3 MB out of a few kB."""
    header = (0x0803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (4000, 28, 28))
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = comp.compress(header) + comp.compress(bytes(4000 * 28 * 28)) + comp.flush()
    return out


MNIST_BAD: dict[str, dict[str, bytes | None]] = {
    "train images truncated": {"train-images-idx3-ubyte": _idx(np.zeros((40, 28, 28)))[:5000]},
    "train labels truncated": {"train-labels-idx1-ubyte": _idx(np.arange(40) % 10)[:20]},
    "images wrong magic": {"train-images-idx3-ubyte": _idx(np.zeros((40, 28, 28)), 0x0903)},
    "labels wrong magic": {"train-labels-idx1-ubyte": _idx(np.arange(40) % 10, 0x0000)},
    "labels count != images count": {"train-labels-idx1-ubyte": _idx(np.arange(39) % 10)},
    "label value 10": {"train-labels-idx1-ubyte": _idx(np.full(40, 10))},
    "label value 255": {"t10k-labels-idx1-ubyte": _idx(np.full(20, 255))},
    "images 27x28": {"train-images-idx3-ubyte": _idx(np.zeros((40, 27, 28)))},
    "labels 2-D": {"train-labels-idx1-ubyte": _idx(np.zeros((40, 1)))},
    "images 2-D": {"train-images-idx3-ubyte": _idx(np.zeros((40, 784)))},
    "test images empty (0 images)": {"t10k-images-idx3-ubyte": _idx(np.zeros((0, 28, 28))),
                                     "t10k-labels-idx1-ubyte": _idx(np.zeros(0))},
    "images header only, announcing 1e6 images": {
        "train-images-idx3-ubyte": _idx(np.zeros((1, 28, 28)))[:4] +
        b"".join(d.to_bytes(4, "big") for d in (10**6, 28, 28))},
    "images zero-length file": {"train-images-idx3-ubyte": b""},
    "images file is text": {"train-images-idx3-ubyte": b"not an idx file at all\n" * 10},
    "labels file missing": {"train-labels-idx1-ubyte": None},
    "labels with trailing bytes": {"train-labels-idx1-ubyte": _idx(np.arange(40) % 10) + b"xx"},
}


def _mnist_case(desc: str, override: dict[str, bytes | None], mode: str) -> Case:
    def setup_root(tmp: Path) -> Path:
        return _mnist_folder(tmp / "data", **override)

    if mode == "api":
        def call(ctx: Ctx, tmp: Path) -> Any:
            from robustlab.data import load_dataset

            return load_dataset("mnist", setup_root(tmp), verify=False, val_size=10)

        return api("data files", f"load_dataset mnist: {desc}", call)
    return cli("data files", f"train --dataset mnist: {desc}",
               ["train", "--dataset", "mnist", "--data-dir", "$root", "--set",
                "dataset_options={verify: false}", "--val-size", "10", "--no-progress",
                "--epochs", "1", "--device", "cpu", "--out", "$tmp/run"],
               setup=lambda ctx, tmp: {"root": str(setup_root(tmp))})


def mnist_cases() -> list[Case]:
    cases = [_mnist_case(d, o, "api") for d, o in MNIST_BAD.items()]
    cases += [_mnist_case(d, o, "cli") for d, o in list(MNIST_BAD.items())[:8]]

    def bomb(ctx: Ctx, tmp: Path) -> Any:
        import robustlab.data.idx as idx
        from robustlab.data import load_dataset

        idx.MAX_PAYLOAD_BYTES = 1 << 20  # the small version of a bomb: the cap scaled down
        root = _mnist_folder(tmp / "data")
        (root / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(_bomb())
        return load_dataset("mnist", root, verify=False, val_size=10)

    def gz_truncated(ctx: Ctx, tmp: Path) -> Any:
        from robustlab.data import load_dataset

        root = _mnist_folder(tmp / "data")
        f = root / "mnist" / "train-images-idx3-ubyte.gz"
        f.write_bytes(f.read_bytes()[:-30])
        return load_dataset("mnist", root, verify=False, val_size=10)

    def fake_checksum(ctx: Ctx, tmp: Path) -> Any:
        from robustlab.data import load_dataset

        return load_dataset("mnist", _mnist_folder(tmp / "data"), val_size=10)

    cases += [api("data files", "load_dataset mnist: gzip bomb (cap scaled to 1 MB)", bomb),
              api("data files", "load_dataset mnist: gzip stream truncated", gz_truncated),
              api("data files", "load_dataset mnist: files not the official ones (checksum)",
                  fake_checksum)]
    return cases


def _cifar_folder(folder: Path, edit: Callable[[Path], Any] | None = None) -> Path:
    dataset_files.write_dataset("cifar10", folder)
    if edit is not None:
        edit(folder / "cifar-10-batches-bin")
    return folder


CIFAR_BAD: dict[str, Callable[[Path], Any]] = {
    "a batch truncated mid-record": lambda t: (t / "data_batch_1.bin").write_bytes(
        (t / "data_batch_1.bin").read_bytes()[:5000]),
    "test batch missing": lambda t: (t / "test_batch.bin").unlink(),
    "a batch empty": lambda t: (t / "data_batch_3.bin").write_bytes(b""),
    "label byte 10": lambda t: (t / "test_batch.bin").write_bytes(
        b"\x0a" + (t / "test_batch.bin").read_bytes()[1:]),
    "label byte 200": lambda t: (t / "data_batch_2.bin").write_bytes(
        b"\xc8" + (t / "data_batch_2.bin").read_bytes()[1:]),
    "a batch is a directory": lambda t: ((t / "data_batch_4.bin").unlink(),
                                         (t / "data_batch_4.bin").mkdir()),
    "trailing bytes after the records": lambda t: (t / "data_batch_5.bin").write_bytes(
        (t / "data_batch_5.bin").read_bytes() + b"abc"),
}


def cifar_cases() -> list[Case]:
    def make(desc: str, edit: Callable[[Path], Any]) -> Case:
        def call(ctx: Ctx, tmp: Path) -> Any:
            from robustlab.data import load_dataset

            return load_dataset("cifar10", _cifar_folder(tmp / "data", edit), verify=False,
                                val_size=10)

        return api("data files", f"load_dataset cifar10: {desc}", call)

    def bad_tar(ctx: Ctx, tmp: Path) -> Any:
        from robustlab.data import load_dataset

        (tmp / "data").mkdir()
        (tmp / "data" / "cifar-10-binary.tar.gz").write_bytes(gzip.compress(b"not a tar" * 100))
        return load_dataset("cifar10", tmp / "data", verify=False)

    return [make(d, e) for d, e in CIFAR_BAD.items()] + [
        api("data files", "load_dataset cifar10: archive is not a tar", bad_tar)]


def _imagefolder(root: Path, edit: Callable[[Path], Any] | None = None) -> Path:
    from PIL import Image

    for split, n in (("train", 4), ("val", 2)):
        for c, cls in enumerate(("cat", "dog", "fox")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (12, 10), (40 * c, 20 * i, 0)).save(root / split / cls /
                                                                      f"{i}.png")
    if edit is not None:
        edit(root)
    return root


IMAGEFOLDER_BAD: dict[str, tuple[Callable[[Path], Any] | None, dict[str, Any]]] = {
    "a text file among the images": (lambda r: (r / "train" / "cat" / "x.png").write_text("hi"),
                                     {}),
    "a truncated PNG": (lambda r: (r / "train" / "dog" / "0.png").write_bytes(
        (r / "train" / "dog" / "0.png").read_bytes()[:30]), {}),
    "a zero-byte image": (lambda r: (r / "val" / "fox" / "1.png").write_bytes(b""), {}),
    "an empty class folder": (lambda r: shutil.rmtree(r / "train" / "fox") or
                              (r / "train" / "fox").mkdir(), {}),
    "val classes differ from train": (lambda r: (r / "val" / "fox").rename(r / "val" / "wolf"),
                                      {}),
    "only one class": (lambda r: [shutil.rmtree(r / s / c) for s in ("train", "val")
                                  for c in ("dog", "fox")], {}),
    "no train folder": (lambda r: shutil.rmtree(r / "train"), {}),
    "train is a file": (lambda r: (shutil.rmtree(r / "train"), (r / "train").write_text("x")),
                        {}),
    "image_size 0": (None, {"image_size": 0}),
    "image_size -8": (None, {"image_size": -8}),
    "workers 0": (None, {"workers": 0}),
    "classes naming a missing class": (None, {"classes": ["cat", "zebra"]}),
    "unknown option": (None, {"nosuch": 1}),
}


def imagefolder_cases() -> list[Case]:
    def make(desc: str, edit: Callable[[Path], Any] | None, opts: dict[str, Any]) -> Case:
        def call(ctx: Ctx, tmp: Path) -> Any:
            from robustlab.data import load_dataset

            options = {"image_size": 8, "val_size": 3, "workers": 1, **opts}
            return load_dataset("imagefolder", _imagefolder(tmp / "imgs", edit), **options)

        return api("data files", f"load_dataset imagefolder: {desc}", call)

    return [make(d, e, o) for d, (e, o) in IMAGEFOLDER_BAD.items()]


SYNTHETIC_BAD: list[dict[str, Any]] = [
    {"n_train": 0}, {"num_classes": 1}, {"noise": -1.0}, {"image_size": 0}, {"channels": 0},
    {"nosuch": 1}, {"n_train": "x"}, {"noise": float("nan")}, {"n_test": True},
    {"val_size": -1}, {"val_size": 1.5}, {"val_size": 5000}, {"split_seed": -1},
    {"download": "yes"}, {"image_size": (8, 0)},
]


def dataset_api_cases() -> list[Case]:
    def make(opts: dict[str, Any]) -> Case:
        def call(ctx: Ctx, tmp: Path) -> Any:
            from robustlab.data import load_dataset

            return load_dataset("synthetic", **{"n_train": 60, "n_test": 20, **opts})

        return api("data files", f"load_dataset synthetic {opts}", call)

    def name(value: Any) -> Case:
        def call(ctx: Ctx, tmp: Path) -> Any:
            from robustlab.data import load_dataset

            return load_dataset(value)

        return api("data files", f"load_dataset({value!r})", call)

    def root_is_file(ctx: Ctx, tmp: Path) -> Any:
        from robustlab.data import load_dataset

        (tmp / "f").write_text("x")
        return load_dataset("mnist", tmp / "f")

    return ([make(o) for o in SYNTHETIC_BAD] + [name(v) for v in ("nope", "", None, 5)]
            + [api("data files", "load_dataset mnist: root is a file", root_is_file)])


def data_file_cases() -> list[Case]:
    return mnist_cases() + cifar_cases() + imagefolder_cases() + dataset_api_cases()


# ------------------------------------------------------------------------------------------
# the attack API (tiny model: 4 images 1x8x8, 10 classes)


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


class _Wrap(nn.Module):
    def __init__(self, how: str) -> None:
        super().__init__()
        self.net, self.how = tiny_net(), how

    def forward(self, x: torch.Tensor) -> Any:
        out = self.net(x)
        return {"tuple": lambda: (out, x), "dict": lambda: {"logits": out},
                "nan": lambda: out * float("nan"), "1d": lambda: out[:, 0],
                "argmax": lambda: out.argmax(1), "rows": lambda: torch.cat([out, out]),
                "inf": lambda: out + float("inf"), "3d": lambda: out[:, :, None],
                "no-grad": lambda: out.detach(), "one-class": lambda: out[:, :1]}[self.how]()


def tiny_data(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % 10


ATTACK_NAMES = ("fgsm", "pgd", "square", "apgd-ce", "cw-linf")
BAD_X: dict[str, Callable[[torch.Tensor], Any]] = {
    "uint8 images": lambda x: (x * 255).to(torch.uint8),
    "int64 images": lambda x: (x * 255).long(),
    "numpy float32 images": lambda x: x.numpy(),
    "x above 1 (0-255 floats)": lambda x: x * 255,
    "x below 0": lambda x: x - 0.5,
    "NaN pixel": lambda x: x.clone().index_put_((torch.tensor([0]),), torch.tensor(float("nan"))),
    "3-D x (no batch)": lambda x: x[0],
    "NHWC x": lambda x: x.permute(0, 2, 3, 1).expand(4, 8, 8, 3).contiguous(),
    "x a list": lambda x: x.tolist(),
    "x bool": lambda x: x > 0.5,
}
BAD_Y: dict[str, Callable[[torch.Tensor], Any]] = {
    "label 10 (of 10 classes)": lambda y: torch.full_like(y, 10),
    "label -1": lambda y: torch.full_like(y, -1),
    "float labels": lambda y: y.float(),
    "labels 2-D": lambda y: y[:, None],
    "3 labels for 4 images": lambda y: y[:3],
    "numpy labels": lambda y: y.numpy(),
    "one-hot labels": lambda y: torch.nn.functional.one_hot(y, 10),
}


def _attack_call(name: str, opts: dict[str, Any], xf: Callable | None = None,
                 yf: Callable | None = None, model: str | None = None,
                 target: Any = None) -> Callable[[Ctx, Path], Any]:
    def call(ctx: Ctx, tmp: Path) -> Any:
        from robustlab.attacks import create

        net = _Wrap(model) if model else tiny_net()
        x, y = tiny_data()
        attack = create(name, **{"eps": 0.1, **_cheap(name), **opts})
        return attack(net, xf(x) if xf else x, yf(y) if yf else y,
                      *([] if target is None else [target]))

    return call


def _cheap(name: str) -> dict[str, Any]:
    return {"pgd": {"steps": 2}, "square": {"n_queries": 5}, "apgd-ce": {"steps": 2},
            "cw-linf": {"steps": 2}}.get(name, {})


ATTACK_BAD_OPTS: list[dict[str, Any]] = [
    {"eps": -0.1}, {"eps": float("nan")}, {"eps": float("inf")}, {"eps": 8}, {"eps": "0.1"},
    {"eps": None}, {"eps": True}, {"norm": "l3"}, {"norm": ""}, {"norm": None}, {"norm": 3},
    {"nosuch": 1},
]
STEP_BAD: list[dict[str, Any]] = [
    {"steps": 0}, {"steps": -1}, {"steps": 1.5}, {"steps": "10"}, {"steps": True},
    {"restarts": 0}, {"random_start": "false"}, {"random_start": 0}, {"step_size": -0.01},
    {"step_size": float("nan")}, {"targeted": "yes"},
]


def attack_api_cases() -> list[Case]:
    cases = []
    for name in ATTACK_NAMES:
        cases += [api("attack API", f"{name}: {d}", _attack_call(name, {}, xf=f))
                  for d, f in BAD_X.items() if name == "fgsm" or d != "NHWC x"]
        cases += [api("attack API", f"{name}: {d}", _attack_call(name, {}, yf=f))
                  for d, f in BAD_Y.items()]
        cases += [api("attack API", f"{name}: create(**{o})", _attack_call(name, o))
                  for o in ATTACK_BAD_OPTS]
    apgd_bad = [o for o in STEP_BAD if set(o) <= {"steps", "restarts"}] + [
        {"momentum": 1.5}, {"momentum": float("nan")}, {"rho": -1}, {"rho": 2}]
    for name, bad in (("pgd", STEP_BAD), ("apgd-ce", apgd_bad)):
        cases += [api("attack API", f"{name}: create(**{o})", _attack_call(name, o))
                  for o in bad]
    for name in ("fgsm", "pgd", "square"):  # square needs no gradient: no-grad is fine there
        cases += [api("attack API", f"{name}: model output {how}",
                      _attack_call(name, {}, model=how))
                  for how in ("tuple", "dict", "nan", "1d", "argmax", "rows", "inf", "3d",
                              "no-grad", "one-class") if not (name, how) == ("square", "no-grad")]
    cases += [api("attack API", "create('nope')", lambda c, t: __import__(
        "robustlab.attacks", fromlist=["create"]).create("nope")),
              api("attack API", "pgd: target wrong shape",
                  _attack_call("pgd", {}, target=torch.zeros(3, dtype=torch.long))),
              api("attack API", "pgd: target label 10",
                  _attack_call("pgd", {}, target=torch.full((4,), 10))),
              api("attack API", "pgd: target equals y (targeted)",
                  _attack_call("pgd", {}, target=torch.arange(4) % 10))]
    return cases


# ------------------------------------------------------------------------------------------
# the own-model API: robustlab.evaluate, load_user_model, robustlab.train


def _evaluate_call(**over: Any) -> Callable[[Ctx, Path], Any]:
    def call(ctx: Ctx, tmp: Path) -> Any:
        import robustlab

        x, y = tiny_data()
        model = over.pop("model", None)
        net = _Wrap(model) if model else tiny_net()
        kwargs = {"eps": 0.1, "attacks": ["fgsm"], **over}
        x = kwargs.pop("x", x)
        y = kwargs.pop("y", y)
        return robustlab.evaluate(net, x, y, **kwargs)

    return call


EVALUATE_BAD: dict[str, dict[str, Any]] = {
    "eps -1": {"eps": -1}, "eps nan": {"eps": float("nan")}, "eps 2 (linf)": {"eps": 2},
    "eps 'big'": {"eps": "big"}, "eps None": {"eps": None}, "L2 eps 1000": {"norm": "l2",
                                                                           "eps": 1000},
    "norm l3": {"norm": "l3"}, "norm 1": {"norm": 1}, "attacks ['nope']": {"attacks": ["nope"]},
    "attacks []": {"attacks": []}, "attacks 'fgsm' (a string)": {"attacks": "fgsm,pgd"},
    "n 0": {"n": 0}, "n -1": {"n": -1}, "n 100 (> 4 samples)": {"n": 100},
    "batch_size 0": {"batch_size": 0}, "seed -1": {"seed": -1}, "seed 'x'": {"seed": "x"},
    "attack_options unknown attack": {"attack_options": {"nope": {"steps": 1}}},
    "attack_options for an attack not run": {"attack_options": {"pgd": {"steps": 1}}},
    "attack_options bad value": {"attack_options": {"fgsm": {"eps": 3}}},
    "attack_options not a dict": {"attack_options": [1]},
    "device 'tpu'": {"device": "tpu"}, "y None": {"y": None},
    "x uint8": {"x": (tiny_data()[0] * 255).to(torch.uint8)},
    "x 0-255 floats": {"x": tiny_data()[0] * 255}, "x a list": {"x": [[0.0]]},
    "y float": {"y": torch.zeros(4)}, "y 3 labels": {"y": torch.zeros(3, dtype=torch.long)},
    "y label 10": {"y": torch.full((4,), 10)}, "y label -1": {"y": torch.full((4,), -1)},
    "x 3-D": {"x": tiny_data()[0][0]}, "x empty": {"x": torch.zeros(0, 1, 8, 8),
                                                   "y": torch.zeros(0, dtype=torch.long)},
    "x NaN": {"x": torch.full((4, 1, 8, 8), float("nan"))},
    "dataset name and y": {"x": "synthetic", "y": torch.zeros(4)},
    "unknown dataset name": {"x": "nope", "y": None},
    "model returns a tuple": {"model": "tuple"}, "model returns NaN": {"model": "nan"},
    "model returns 1-D": {"model": "1d"}, "model returns one class": {"model": "one-class"},
    "model returns argmax": {"model": "argmax"},
}


def _user_model_call(source: str | None, spec_tail: str = ":make", **kw: Any
                     ) -> Callable[[Ctx, Path], Any]:
    def call(ctx: Ctx, tmp: Path) -> Any:
        import robustlab

        if source is not None:
            (tmp / "net.py").write_text(MODEL_HEAD + source)
        weights = kw.pop("weights_kind", None)
        if weights:
            _write_weights(tmp / _weights_name(weights), weights)
            kw["weights"] = str(tmp / _weights_name(weights))
        return robustlab.load_user_model(str(tmp / "net.py") + spec_tail, **kw)

    return call


def own_model_api_cases() -> list[Case]:
    cases = [api("own-model API", f"robustlab.evaluate: {d}", _evaluate_call(**kw))
             for d, kw in EVALUATE_BAD.items()]
    good = f"def make():\n    return {GOOD_NET}\n"
    for desc in ("syntax error", "factory raises", "factory needs an argument",
                 "factory returns None", "factory returns a tensor", "factory is not callable"):
        cases.append(api("own-model API", f"load_user_model: {desc}",
                         _user_model_call(OWN_MODELS[desc])))
    cases += [api("own-model API", "load_user_model: missing file",
                  _user_model_call(None)),
              api("own-model API", "load_user_model: no such factory",
                  _user_model_call(good, ":nosuch")),
              api("own-model API", "load_user_model: normalize std 0",
                  _user_model_call(good, normalize=([0.5], [0.0]))),
              api("own-model API", "load_user_model: normalize lengths differ",
                  _user_model_call(good, normalize=([0.5, 0.5], [0.3]))),
              api("own-model API", "load_user_model: device 'tpu'",
                  _user_model_call(good, device="tpu"))]
    cases += [api("own-model API", f"load_user_model weights: {k}",
                  _user_model_call(good, weights_kind=k))
              for k in ("wrong keys", "wrong shapes", "missing a key", "garbage bytes")]
    cases += [api("own-model API", "load_model: missing folder",
                  lambda c, t: __import__("robustlab").load_model(t / "nope")),
              api("own-model API", "load_model: wrong architecture given as model=",
                  lambda c, t: __import__("robustlab").load_model(c.fields["run"],
                                                                  model=tiny_net())),
              api("own-model API", "load_model: device 'tpu'",
                  lambda c, t: __import__("robustlab").load_model(c.fields["run"],
                                                                  device="tpu"))]
    return cases


def _train_call(data: Any = None, model: Any = None, **kw: Any) -> Callable[[Ctx, Path], Any]:
    def call(ctx: Ctx, tmp: Path) -> Any:
        import robustlab

        x, y = tiny_data(16)
        d = data(x, y) if callable(data) else ((x, y) if data is None else data)
        net = model() if callable(model) else (tiny_net() if model is None else model)
        fields = {"epochs": 1, "batch_size": 8, "out_dir": str(tmp / "run"), "device": "cpu",
                  "progress": False, "val_size": 4, **kw}
        return robustlab.train(net, d, **fields)

    return call


TRAIN_API_BAD: dict[str, dict[str, Any]] = {
    "NHWC numpy images (transposed with a note)": {
        "data": lambda x, y: (x.permute(0, 2, 3, 1).numpy(), y.numpy())},
    "NaN pixels": {"data": lambda x, y: (x * float("nan"), y)},
    "0-255 float pixels": {"data": lambda x, y: (x * 255, y)},
    "uint8 pixels": {"data": lambda x, y: ((x * 255).to(torch.uint8), y)},
    "float labels": {"data": lambda x, y: (x, y.float())},
    "negative labels": {"data": lambda x, y: (x, y - 5)},
    "mismatched lengths": {"data": lambda x, y: (x, y[:10])},
    "empty data": {"data": lambda x, y: (x[:0], y[:0])},
    "data None": {"data": lambda x, y: None},
    "data a dict": {"data": lambda x, y: {"x": x, "y": y}},
    "data a 3-tuple": {"data": lambda x, y: (x, y, y)},
    "loader yielding triples": {"data": lambda x, y: [(x[:8], y[:8], y[:8])]},
    "loader batches of different sizes per image": {
        "data": lambda x, y: [(x[:8], y[:8]), (x[:8, :, :4], y[:8])]},
    "labels 2-D": {"data": lambda x, y: (x, y[:, None])},
    "num_classes smaller than labels": {"num_classes": 5},
    "model returns a tuple": {"model": lambda: _Wrap("tuple")},
    "model returns 1-D": {"model": lambda: _Wrap("1d")},
    "model with 5 outputs on 10 classes": {"model": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(64, 5))},
    "model not a module": {"model": 5},
    "method nope": {"method": "nope"},
    "pgd-at without eps": {"method": "pgd-at"},
    "eps 2": {"method": "pgd-at", "eps": 2},
    "epochs 0": {"epochs": 0},
    "unknown field": {"nosuch": 1},
    "batch_size 0": {"batch_size": 0},
    "val with wrong image size": {"val": (torch.rand(4, 1, 6, 6),
                                          torch.zeros(4, dtype=torch.long))},
    "val_size larger than the data": {"val_size": 100},
    "dataset name with num_classes": {"data": lambda x, y: "synthetic", "num_classes": 10},
    "out_dir a file": {"out_dir": "/etc/hostname"},
    "lr nan": {"lr": float("nan")},
    "recipe bogus": {"recipe": "bogus"},
}


def train_api_cases() -> list[Case]:
    return [api("robustlab.train", d, _train_call(**kw),
                expected="warn" if "with a note" in d else "refuse")
            for d, kw in TRAIN_API_BAD.items()]


# ------------------------------------------------------------------------------------------
# the corpus, setup, the table


def build_corpus() -> list[Case]:
    cases = (train_flag_cases() + config_cases() + evaluate_flag_cases()
             + own_model_cli_cases() + certify_cases() + reproduce_cases() + report_cases()
             + export_cases() + run_folder_cases() + data_file_cases() + attack_api_cases()
             + own_model_api_cases() + train_api_cases())
    seen: set[tuple[str, str]] = set()
    for case in cases:
        key = (case.category, case.desc)
        assert key not in seen, f"duplicate case {key}"
        seen.add(key)
    return cases


def _quiet_main(argv: list[str]) -> int:
    from robustlab.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def _train_unfinished(out: Path, seed: int) -> None:
    """An interrupted run (epoch 1 of 2 done, its checkpoint kept), in a forked child."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        import robustlab.training.loop as loop

        real, calls = loop._train_epoch, []

        def epoch(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if len(calls) == 2:
                os._exit(0)  # as a kill after the first epoch's writes
            return real(*args, **kwargs)

        loop._train_epoch = epoch
        _quiet_main(_seeded(ctx_train_args([], out=str(out)), seed))
        os._exit(1)
    os.waitpid(pid, 0)
    assert (out / "checkpoint.safetensors").is_file(), f"no checkpoint in {out}"


def _seeded(args: list[str], seed: int) -> list[str]:
    i = args.index("--seed")
    return args[:i + 1] + [str(seed)] + args[i + 2:]


def setup(root: Path, extras: bool = True) -> Ctx:
    """One tiny finished run (and a second, another seed), evaluated once; two interrupted
    runs with a checkpoint; a real MNIST folder if there is one. `extras` False: no second
    run of each kind (the cases about "another run" then cannot run)."""
    ctx = Ctx(root)
    for name, seed in (("run", 0), ("run2", 1))[:2 if extras else 1]:
        args = _seeded(ctx_train_args([], out=str(root / name)), seed)
        args[args.index("--epochs") + 1] = "1"
        assert _quiet_main(args) == 0, f"setup: training {name} failed"
        ctx.fields[name] = str(root / name)
    assert _quiet_main(["evaluate", ctx.fields["run"], "--attacks", "fgsm", "--n", "16",
                        "--no-audit", "--no-curve", "--no-progress", "--device", "cpu"]) == 0
    for name, seed in (("unfinished", 0), ("unfinished2", 1))[:2 if extras else 1]:
        _train_unfinished(root / name, seed)
        ctx.fields[name] = str(root / name)
    mnist = Path(__file__).resolve().parents[2] / "shared" / "data"
    ctx.fields["mnist"] = os.environ.get("ROBUSTLAB_DATA") or str(mnist)
    return ctx


def tally(results: list[tuple[Case, str, str]]) -> str:
    counts: dict[str, Counter] = {}
    for case, outcome, _ in results:
        counts.setdefault(case.category, Counter())[outcome] += 1
    total = Counter()
    width = max(len(c) for c in counts) + 2
    lines = [f"{'category':<{width}}" + "".join(f"{o:>10}" for o in OUTCOMES) + f"{'cases':>8}"]
    for cat, c in counts.items():
        total.update(c)
        lines.append(f"{cat:<{width}}" + "".join(f"{c[o]:>10}" for o in OUTCOMES)
                     + f"{sum(c.values()):>8}")
    lines.append(f"{'TOTAL':<{width}}" + "".join(f"{total[o]:>10}" for o in OUTCOMES)
                 + f"{sum(total.values()):>8}")
    return "\n".join(lines)


def details(results: list[tuple[Case, str, str]]) -> str:
    out = []
    order = {o: i for i, o in enumerate(("hang", "traceback", "accepted", "unclear", "warned"))}
    for case, outcome, tail in sorted(results, key=lambda r: order.get(r[1], 9)):
        if outcome == "refused":
            continue
        short = textwrap.indent(tail.strip()[-700:], "      ")
        out.append(f"[{outcome}] {case.category}: {case.desc}\n{short}")
    return "\n".join(out)


# (category, description) of cases known to be open: left out of `--sample` (the test's).
KNOWN_OPEN: set[tuple[str, str]] = set()


def _needs_extras(case: Case) -> bool:
    """Cases that need setup's second run of each kind (setup(extras=False) skips them)."""
    return "another run" in case.desc


def sample(cases: list[Case], per_category: int) -> list[Case]:
    """`per_category` cases of each category, spread evenly over its cases (the ones open in
    KNOWN_OPEN and those needing setup's extras left out): `tests/test_bad_inputs_corpus.py`."""
    by_cat: dict[str, list[Case]] = {}
    for case in cases:
        if (case.category, case.desc) not in KNOWN_OPEN and not _needs_extras(case):
            by_cat.setdefault(case.category, []).append(case)
    chosen = []
    for group in by_cat.values():
        step = max(1, len(group) // per_category)
        chosen += group[step // 2::step][:per_category]
    return chosen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=None, help="run one category only")
    p.add_argument("--grep", default=None, help="run only cases whose description has this")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--json", default=None, help="also write every outcome to this JSON file")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="only N cases per category, spread evenly (the test's sample)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cases = [c for c in build_corpus() if (args.only is None or c.category == args.only)
             and (args.grep is None or args.grep in c.desc)]
    if args.sample is not None:
        cases = sample(cases, args.sample)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as tmp:
        ctx = setup(Path(tmp), extras=args.sample is None)
        print(f"setup done in {time.perf_counter() - t0:.0f} s; {len(cases)} cases",
              file=sys.stderr)
        results = []
        for i, case in enumerate(cases):
            outcome, tail = run_case(case, ctx, min(case.timeout, args.timeout))
            results.append((case, outcome, tail))
            if outcome not in ("refused", "warned"):
                print(f"  {i + 1}/{len(cases)} [{outcome}] {case.category}: {case.desc}",
                      file=sys.stderr)
    print(tally(results))
    print(f"\n{len(results)} cases in {time.perf_counter() - t0:.0f} s\n")
    print("Not refused:\n" + details(results))
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"category": c.category, "desc": c.desc, "outcome": o, "tail": t}
             for c, o, t in results], indent=1))
    bad = sum(o in ("accepted", "hang", "unclear") for _, o, _ in results)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
