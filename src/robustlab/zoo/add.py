"""Add a zoo entry from a finished run folder: `add_entry(run, name, benchmark=...)` or
`python -m robustlab.zoo.add RUN --name NAME --eval BENCHMARK.json`.

The run's weights (its averaged ones when it has them, as `load_run` picks) are copied beside a
model card written from its config.json, summary.json and the `robustlab benchmark` JSON of
those weights (AutoAttack standard at the original counts; the JSON's weights digest must be
the run's). Nothing is overwritten: an existing entry is refused. The one change an entry
takes is a new measurement of its very weights: `replace_evaluation(name, benchmark=...)` or
`python -m robustlab.zoo.add --name NAME --eval BENCHMARK.json --replace-evaluation` (no RUN)
puts a `robustlab benchmark --pretrained NAME` JSON (at least the card's n images) in place of
the card's evaluation and keeps the replaced figures under `evaluation.replaced`; the weights
and the training record stay. Paths in a card are portable: the run is named by its folder's
name, and in a recorded command the run folder reads `RUN` and any other absolute path its
file name. See docs/zoo.md.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from robustlab.common.digest import check_digest
from robustlab.common.errors import ConfigError
from robustlab.common.files import FileFormatError, atomic_write, atomic_write_json, read_json
from robustlab.common.vocabulary import (
    BENCHMARK_SCHEMA,
    WEIGHTS_AVERAGED,
    WEIGHTS_LAST,
    ZOO_CARD_SCHEMA,
)
from robustlab.data.in_memory import CUSTOM
from robustlab.models import create_model
from robustlab.registry import RegistryError
from robustlab.runs.checkpoint import WeightsError, weights_digest
from robustlab.runs.folder import AVERAGED_WEIGHTS, CONFIG, WEIGHTS, RunFolderError
from robustlab.runs.load import load_run_weights
from robustlab.runs.saved import open_run, recorded_model_kwargs
from robustlab.zoo.cards import (
    ZooError,
    card_path,
    check_card,
    check_name,
    file_sha256,
    read_card,
    zoo_folder,
)
from robustlab.zoo.load import check_weights_file

# What the benchmark JSON must say of its attack: AutoAttack, standard, at the original counts.
STANDARD_ATTACK = {"name": "autoattack", "version": "standard", "steps": 100,
                   "n_target_classes": 9, "n_queries": 5000}


def add_entry(run: str | os.PathLike[str], name: str, *, benchmark: str | os.PathLike[str],
              zoo_dir: str | os.PathLike[str] | None = None, weights: str = WEIGHTS_AVERAGED,
              command: str | None = None) -> Path:
    """Write `ZOO/name.safetensors` (a copy of the run's weights) and `ZOO/name.json` (its
    card); returns the card's path. `benchmark`: the `robustlab benchmark` JSON of those very
    weights; `command`: the exact training command (default: `train --config` of the card's
    recorded config)."""
    name = check_name(name)
    folder_out = zoo_folder(zoo_dir)
    card_file, weights_file = folder_out / f"{name}.json", folder_out / f"{name}.safetensors"
    for p in (card_file, weights_file):
        if p.exists() or p.is_symlink():
            raise ZooError(f"{p} already exists: the zoo never replaces an entry (remove "
                           f"{card_file.name} and {weights_file.name} first to add it again)")
    run_facts = _run_facts(Path(run), weights)
    cfg = run_facts["cfg"]
    bench = _checked_benchmark(
        Path(benchmark), run_facts["tensors_sha256"],
        f"run {run_facts['folder'].path}'s {run_facts['which']} weights",
        (cfg.dataset, cfg.norm, cfg.eps), "the run's")
    folder_out.mkdir(parents=True, exist_ok=True)
    atomic_write(weights_file, lambda tmp: shutil.copyfile(run_facts["file"], tmp))
    card = _card(name, run_facts, bench, weights_file, command)
    atomic_write_json(card_file, check_card(card, card_file))  # the card last: a whole entry
    return card_file


def _run_facts(path: Path, weights: str) -> dict[str, Any]:
    """What the card needs from the run: its config, model, weights file and their digest."""
    folder, cfg = open_run(path)
    if not folder.is_complete:
        raise ZooError(f"run {folder.path} is not complete (no summary.json): only a finished "
                       "run can become a zoo entry")
    if cfg.model == CUSTOM or cfg.dataset == CUSTOM or cfg.defense is not None:
        raise ZooError(f"run {folder.path}: a zoo entry is a registered model on a registered "
                       "dataset without a preprocessing defense (this run has "
                       f"model={cfg.model!r}, dataset={cfg.dataset!r}, "
                       f"defense={cfg.defense!r})")
    kwargs = recorded_model_kwargs(folder)
    if kwargs is None:
        raise ZooError(f"run {folder.path}: its config.json records no model_kwargs (written "
                       "by an older robustlab); train it again to add it to the zoo")
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    model = create_model(cfg.model, **kwargs)
    which = load_run_weights(folder, cfg, model, weights)  # checked against summary.json
    return {"folder": folder, "cfg": cfg, "kwargs": kwargs, "which": which,
            "file": folder.file(AVERAGED_WEIGHTS if which == WEIGHTS_AVERAGED else WEIGHTS),
            "tensors_sha256": weights_digest(model.state_dict()),
            "config_file": _read(folder.file(CONFIG)), "summary": folder.read_summary()}


def _read(path: Path) -> Any:
    try:
        return check_digest(read_json(path), str(path))
    except FileFormatError as err:
        raise ZooError(str(err)) from None


def replace_evaluation(name: str, *, benchmark: str | os.PathLike[str],
                       zoo_dir: str | os.PathLike[str] | None = None) -> Path:
    """Put `benchmark` (a `robustlab benchmark` JSON of entry `name`'s very weights: AutoAttack
    standard at the original counts, the card's dataset, norm and eps, at least the card's n
    images) in place of the card's evaluation; the replaced headline figures stay under
    `evaluation.replaced`. The weights file (checked against the card) and the training record
    are kept, its run folder by its name (`training.run`, `training.config.out_dir`). Returns
    the card's path."""
    name = check_name(name)
    card_file = card_path(name, zoo_dir)
    card = read_card(name, zoo_dir)
    check_weights_file(card, card_file, refusing="re-evaluate it")
    threat = card["threat_model"]
    bench = _checked_benchmark(Path(benchmark), card["weights"]["tensors_sha256"],
                               f"entry {name}'s weights",
                               (card["dataset"], threat["norm"], threat["eps"]), "the card's")
    old = card["evaluation"]
    if bench["n"] < old["n"]:
        raise ZooError(f"--eval {benchmark}: n {bench['n']} is fewer test images than the "
                       f"card's evaluation (n = {old['n']}); measure at least as many")
    card["evaluation"] = {
        **_evaluation(bench, None),
        "replaced": {k: old.get(k) for k in ("clean_acc", "autoattack_acc", "n", "commit")}}
    card["training"] = _portable_training(card["training"])
    atomic_write_json(card_file, check_card(card, card_file))
    return card_file


def _checked_benchmark(path: Path, digest: str, whose: str, expected: tuple[Any, ...],
                       where: str) -> dict[str, Any]:
    """The benchmark JSON, refused unless it is robustlab's AutoAttack standard result of the
    weights whose state-dict digest is `digest` (`whose`), at `expected` = (dataset, norm,
    eps) (`where`'s)."""
    if not path.is_file():
        raise ZooError(f"--eval {path}: file not found (write it with robustlab benchmark RUN)")
    data = _read(path)
    if not isinstance(data, dict) or data.get("schema") != BENCHMARK_SCHEMA:
        raise ZooError(f"--eval {path}: schema: expected {BENCHMARK_SCHEMA!r} (the JSON "
                       "`robustlab benchmark RUN` writes), got "
                       f"{data.get('schema') if isinstance(data, dict) else data!r}")
    attack = data.get("attack") or {}
    wrong = {k: attack.get(k) for k, v in STANDARD_ATTACK.items() if attack.get(k) != v}
    if wrong:
        raise ZooError(f"--eval {path}: attack: expected AutoAttack standard at the original "
                       f"counts {STANDARD_ATTACK}, got {wrong}")
    if data.get("weights_sha256") != digest:
        raise ZooError(f"--eval {path}: weights_sha256 {data.get('weights_sha256')} is not the "
                       f"digest of {whose} ({digest}): it measured other weights")
    got = (data.get("dataset"), data.get("norm"), data.get("eps_value"))
    if got != expected:
        raise ZooError(f"--eval {path}: (dataset, norm, eps) {got} differ from {where} "
                       f"{expected}")
    return data


def portable_command(command: str | None, run_folder: Path | None) -> str | None:
    """`command` with the run folder's path as `RUN` and any other absolute path as its file
    name: the card says what was run, not where on the machine that made it."""
    if not command:
        return command
    run = str(run_folder.resolve()) if run_folder is not None else None
    words = shlex.split(command)
    return shlex.join("RUN" if run is not None and os.path.abspath(w) == run
                      else Path(w).name if os.path.isabs(w) else w for w in words)


def _portable_training(training: dict[str, Any]) -> dict[str, Any]:
    """The card's training record with the run folder (`run`, `config.out_dir`) by its name."""
    config = dict(training.get("config") or {})
    if config.get("out_dir"):
        config["out_dir"] = Path(config["out_dir"]).name
    return {**training, "config": config, "run": Path(training["run"]).name}


def _evaluation(bench: dict[str, Any], run_folder: Path | None) -> dict[str, Any]:
    """The card's evaluation block from a benchmark JSON: accuracies in %, on the first n test
    images."""
    return {
        "clean_acc": bench["clean"]["acc"], "autoattack_acc": bench["autoattack"]["acc"],
        **{k: bench.get(k) for k in (
            "n", "attack", "commit", "clean_acc_interval", "autoattack_acc_interval",
            "interval", "seconds", "device")},
        "command": portable_command(bench.get("command"), run_folder),
        # "1" = correct / robust per test image (absent from benchmarks before it)
        **({"per_image": bench["per_image"]} if bench.get("per_image") else {})}


def _card(name: str, run: dict[str, Any], bench: dict[str, Any], weights_file: Path,
          command: str | None) -> dict[str, Any]:
    cfg, summary = run["cfg"], run["summary"]
    environment = run["config_file"].get("environment") or {}
    return {
        "schema": ZOO_CARD_SCHEMA, "name": name, "dataset": cfg.dataset,
        "dataset_options": dict(cfg.dataset_options or {}),
        "model": {"name": cfg.model, "kwargs": run["kwargs"]},
        "threat_model": {"norm": cfg.norm, "eps": cfg.eps},
        "weights": {"file": weights_file.name, "sha256": file_sha256(weights_file),
                    "tensors_sha256": run["tensors_sha256"], "which": run["which"],
                    "averaging": cfg.averaging if run["which"] == WEIGHTS_AVERAGED else None},
        "training": _portable_training({
            "command": command or ("robustlab train --config CONFIG.yaml, CONFIG.yaml holding "
                                   "this card's training.config"),
            "config": run["config_file"]["train"], "commit": environment.get("git_commit"),
            "environment": environment, "train_time_s": summary.get("train_time_s"),
            "test_acc": summary.get("test_acc"), "run": str(run["folder"].path.resolve())}),
        "evaluation": _evaluation(bench, run["folder"].path),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robustlab.zoo.add",
                                description="add a finished run folder to robustlab's zoo, or "
                                            "replace an entry's evaluation (docs/zoo.md)")
    p.add_argument("run", metavar="RUN", nargs="?", default=None,
                   help="the run folder robustlab train wrote (not with --replace-evaluation)")
    p.add_argument("--name", required=True, help="the entry's name, e.g. mnist-lenet5-linf")
    p.add_argument("--eval", required=True, metavar="BENCHMARK.json",
                   help="`robustlab benchmark RUN`'s JSON of the same weights (with "
                        "--replace-evaluation: `robustlab benchmark --pretrained NAME`'s)")
    p.add_argument("--replace-evaluation", action="store_true",
                   help="put --eval in place of entry NAME's evaluation (its weights stay)")
    p.add_argument("--zoo-dir", default=None, help="the zoo folder (default: $ROBUSTLAB_ZOO, "
                                                   "else robustlab/zoo/models)")
    p.add_argument("--run-weights", default=WEIGHTS_AVERAGED,
                   choices=(WEIGHTS_AVERAGED, WEIGHTS_LAST), help="default averaged")
    p.add_argument("--command", default=None, help="the exact training command, recorded")
    args = p.parse_args(argv)
    if args.replace_evaluation != (args.run is None):
        p.error("give RUN to add an entry, or --replace-evaluation without RUN")
    if args.replace_evaluation and args.command is not None:
        p.error("--command: recorded when an entry is added; --replace-evaluation keeps the "
                "card's training record")
    try:
        if args.replace_evaluation:
            card = replace_evaluation(args.name, benchmark=args.eval, zoo_dir=args.zoo_dir)
        else:
            card = add_entry(args.run, args.name, benchmark=args.eval, zoo_dir=args.zoo_dir,
                             weights=args.run_weights, command=args.command)
    except (ConfigError, RunFolderError, WeightsError, FileFormatError, FileNotFoundError,
            RegistryError) as err:
        print(f"robustlab.zoo.add: error: {err}", file=sys.stderr)
        return 2
    done = "replaced the evaluation of" if args.replace_evaluation else "added"
    print(f"{done} {args.name}: {card} and {card.with_suffix('.safetensors')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
