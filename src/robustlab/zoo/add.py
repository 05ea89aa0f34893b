"""Add a zoo entry from a finished run folder: `add_entry(run, name, benchmark=...)` or
`python -m robustlab.zoo.add RUN --name NAME --eval BENCHMARK.json`.

The run's weights (its averaged ones when it has them, as `load_run` picks) are copied beside a
model card written from its config.json, summary.json and the `robustlab benchmark` JSON of
those weights (AutoAttack standard at the original counts; the JSON's weights digest must be
the run's). Nothing is overwritten: an existing entry is refused. See docs/zoo.md.
"""

from __future__ import annotations

import argparse
import os
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
from robustlab.zoo.cards import ZooError, check_card, check_name, file_sha256, zoo_folder

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
    bench = _checked_benchmark(Path(benchmark), run_facts)
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


def _checked_benchmark(path: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The benchmark JSON, refused unless it is robustlab's AutoAttack standard result of the
    run's weights, at the run's dataset, norm and eps."""
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
    if data.get("weights_sha256") != run["tensors_sha256"]:
        raise ZooError(f"--eval {path}: weights_sha256 {data.get('weights_sha256')} is not the "
                       f"digest of run {run['folder'].path}'s {run['which']} weights "
                       f"({run['tensors_sha256']}): it measured other weights")
    cfg = run["cfg"]
    got = (data.get("dataset"), data.get("norm"), data.get("eps_value"))
    if got != (cfg.dataset, cfg.norm, cfg.eps):
        raise ZooError(f"--eval {path}: (dataset, norm, eps) {got} differ from the run's "
                       f"{(cfg.dataset, cfg.norm, cfg.eps)}")
    return data


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
        "training": {
            "command": command or ("robustlab train --config CONFIG.yaml, CONFIG.yaml holding "
                                   "this card's training.config"),
            "config": run["config_file"]["train"], "commit": environment.get("git_commit"),
            "environment": environment, "train_time_s": summary.get("train_time_s"),
            "test_acc": summary.get("test_acc"), "run": str(run["folder"].path.resolve())},
        "evaluation": {  # accuracies in %, on the first n test images
            "clean_acc": bench["clean"]["acc"], "autoattack_acc": bench["autoattack"]["acc"],
            **{k: bench.get(k) for k in (
                "n", "command", "attack", "commit", "clean_acc_interval",
                "autoattack_acc_interval", "interval", "seconds", "device")},
            # "1" = correct / robust per test image (absent from benchmarks before it)
            **({"per_image": bench["per_image"]} if bench.get("per_image") else {})},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robustlab.zoo.add",
                                description="add a finished run folder to robustlab's zoo "
                                            "(docs/zoo.md)")
    p.add_argument("run", metavar="RUN", help="the run folder robustlab train wrote")
    p.add_argument("--name", required=True, help="the entry's name, e.g. mnist-lenet5-linf")
    p.add_argument("--eval", required=True, metavar="BENCHMARK.json",
                   help="`robustlab benchmark RUN`'s JSON of the same weights")
    p.add_argument("--zoo-dir", default=None, help="the zoo folder (default: $ROBUSTLAB_ZOO, "
                                                   "else robustlab/zoo/models)")
    p.add_argument("--run-weights", default=WEIGHTS_AVERAGED,
                   choices=(WEIGHTS_AVERAGED, WEIGHTS_LAST), help="default averaged")
    p.add_argument("--command", default=None, help="the exact training command, recorded")
    args = p.parse_args(argv)
    try:
        card = add_entry(args.run, args.name, benchmark=args.eval, zoo_dir=args.zoo_dir,
                         weights=args.run_weights, command=args.command)
    except (ConfigError, RunFolderError, WeightsError, FileFormatError, FileNotFoundError,
            RegistryError) as err:
        print(f"robustlab.zoo.add: error: {err}", file=sys.stderr)
        return 2
    print(f"added {args.name}: {card} and {card.with_suffix('.safetensors')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
