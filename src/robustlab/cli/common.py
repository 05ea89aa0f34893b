"""What every command module shares: the error a command raises on a bad argument, KEY=VALUE
parsing, typed flags, the study commands' options and the torchrun relaunch."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

import yaml

from robustlab.common.yaml_io import load_yaml


class CLIError(ValueError):
    pass


class StrictParser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def say_on_rank0(line: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(line, file=sys.stderr)


def on_rank0() -> bool:
    """Whether this process prints (rank 0 of a torchrun launch, or not launched by torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


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


def typed(flag: str, ftype: type):
    def convert(text: str):
        if ftype is str:
            return text
        try:
            return ftype(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{flag}: expected {ftype.__name__}, got {text!r}") from None

    return convert


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
