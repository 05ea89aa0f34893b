"""Command-line interface: `robustlab COMMAND`, one module per command in this package
(train, evaluate, benchmark, certify, export, list, reproduce, report, transfer).

Each command module has `add_command(subparsers)` and its `cmd_*` function: it parses its
arguments, builds a config, validates it (bad values fail here, before any compute, with a
message naming the field) and hands over to the layer below. `main` loads plugins, makes the
process-wide settings (`accel.tune_process`, `--threads`) and turns the user's errors into one
line on stderr. A command module that fails to import is a loud error, never a missing command.
"""

from __future__ import annotations

import argparse
import sys

from robustlab.accel import tune_process
from robustlab.cli import (
    benchmark,
    certify,
    evaluate,
    export,
    listing,
    report,
    reproduce,
    train,
    transfer,
)
from robustlab.cli.common import CLIError, StrictParser, say_on_rank0
from robustlab.common.threads import add_threads_option, use_threads

DESCRIPTION = ("train adversarially robust image classifiers and evaluate them: "
               "robustlab COMMAND --help for each command")
# Commands in the order `robustlab --help` lists them.
COMMANDS = (train, evaluate, benchmark, certify, export, listing, reproduce, report, transfer)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # some Python versions pass launch_torchrun's "--" through
        argv = argv[1:]
    args = parser.parse_args(argv)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        names = ", ".join(c.NAME for c in COMMANDS)
        print(f"robustlab: error: choose a command: {names} (robustlab --help)",
              file=sys.stderr)
        return 2
    try:
        from robustlab.plugins import load_plugins

        load_plugins(args.plugin)
        tune_process()  # process-wide settings belong to the program, not to library calls
        with use_threads(args.threads, say=say_on_rank0):
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
    parser = argparse.ArgumentParser(prog="robustlab", description=DESCRIPTION,
                                     allow_abbrev=False)
    # abbreviations off: `--epoch 1` must be an error, not silently `--epochs 1`
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first, so the datasets, models, methods, attacks "
                             "and defenses it registers can be named (repeatable; worker "
                             "processes read ROBUSTLAB_PLUGINS, see docs/plugins.md)")
    parser.add_argument("--version", action="version", version=f"robustlab {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=StrictParser)
    for command in COMMANDS:
        command.add_command(sub)
    for command in sub.choices.values():  # one --threads N|auto for every command
        add_threads_option(command)
    return parser


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


__all__ = ["CLIError", "build_parser", "main"]
