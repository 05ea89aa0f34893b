"""`robustlab evaluate --model PATH.py:FACTORY --dataset NAME --eps E`: a model robustlab did
not train, attacked and audited exactly as a run folder is (same table, same eval JSON)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from robustlab.attacks import AttackError
from robustlab.common.checks import check_l2_budget
from robustlab.common.device import resolve_device
from robustlab.common.digest import with_digest
from robustlab.common.errors import ConfigError
from robustlab.common.files import atomic_write_json
from robustlab.evaluation import (
    EvalSettings,
    EvalSettingsError,
    evaluate_model,
    format_result_table,
)
from robustlab.evaluation.adv_examples import check_adv_folder
from robustlab.evaluation.api import check_model_for_evaluation
from robustlab.evaluation.attack_runner import build_attacks
from robustlab.evaluation.runs import (
    DEFAULT_ATTACKS,
    claim_output,
)
from robustlab.evaluation.settings import default_attacks, resolve_switches
from robustlab.models.probe import input_dtype
from robustlab.models.user import load_user_model


def evaluate_user_model(spec: str, *, dataset: str | None, weights: str | None,
                        normalize: tuple[list[float], list[float]] | None,
                        eps: float | None, norm: str | None, attacks: list[str],
                        out: str | None, overwrite: bool, data_dir: str | None, device: str,
                        progress: bool = False, save_adv: str | None = None,
                        **settings: Any) -> dict[str, Any]:
    """Evaluate the model `spec` names on `dataset`'s test split; returns the written eval
    dict. `settings` are further `EvalSettings` fields (n, batch_size, seed, audit, ...).
    Every check runs before any compute: the budget, the settings, the output path, the model
    file and its weights, the dataset, then the model's output on one batch of it (the same
    check and message as `robustlab.evaluate`)."""
    if dataset is None:
        raise ConfigError("--dataset: required with --model (the test split to attack, e.g. "
                          "mnist, cifar10; robustlab list datasets)")
    if eps is None:
        raise ConfigError("--eps: required with --model (no default suits every dataset: "
                          "e.g. 0.3 for MNIST, 8/255 = 0.031 for CIFAR-10)")
    evs = _settings(attacks, eps, norm, settings)
    path = Path(out) if out else Path(f"{Path(spec.partition(':')[0]).stem}-eval.json")
    _claim_outputs(path, evs, overwrite, save_adv)
    dev = resolve_device(device)
    model, test = _checked_model_and_data(spec, weights, normalize, dev, dataset, data_dir,
                                          evs)
    run = {"path": None, "model_spec": spec, "weights": weights, "dataset": dataset,
           "model": type(model).__name__, "method": "user", "eps": None, "norm": evs.norm,
           "defense": None, "seed": None}
    return _evaluate_and_write(model, test, evs, dev, run, path, title=f"{spec} on {dataset}",
                               progress=progress, save_adv=save_adv)


def evaluate_robustbench_model(name: str, *, dataset: str | None, threat_model: str,
                               file: str | None, download: bool, eps: float | None,
                               norm: str | None, attacks: list[str], out: str | None,
                               overwrite: bool, data_dir: str | None, device: str,
                               progress: bool = False, save_adv: str | None = None,
                               **settings: Any) -> dict[str, Any]:
    """Evaluate RobustBench's model `name` (`robustlab.models.robustbench`) like a model of
    the user's: the entry's eps and norm unless `eps` / `norm` are given; the eval file
    records the entry (its reported clean / AutoAttack accuracy) under `run.robustbench`.
    `download` fetches the dataset and the checkpoint when they are missing."""
    from robustlab.models.robustbench import find_entry, load_robustbench

    dataset = dataset or "cifar10"
    entry = find_entry(name, dataset=dataset, threat_model=threat_model)  # before any compute
    evs = _settings(attacks, entry.eps if eps is None else eps,
                    entry.norm if norm is None else norm, settings)
    path = Path(out) if out else Path(f"{name}-eval.json")
    _claim_outputs(path, evs, overwrite, save_adv)
    dev = resolve_device(device)
    # the test split first (with --download, fetched too), then the checkpoint
    test, classes = _test_split(dataset, data_dir, evs, val_size=0, download=download)
    model = load_robustbench(name, dataset=dataset, threat_model=entry.threat_model,
                             path=file, download=download, device=dev)
    check_model_for_evaluation(model, test.x, test.y, evs, num_classes=classes)
    run = {"path": None, "model_spec": f"robustbench:{name}", "weights": file,
           "dataset": dataset, "model": entry.architecture, "method": "robustbench",
           "eps": entry.eps, "norm": entry.norm, "defense": None, "seed": None,
           "robustbench": entry.metadata()}
    return _evaluate_and_write(model, test, evs, dev, run, path,
                               title=f"RobustBench {name} on {dataset}", progress=progress,
                               save_adv=save_adv)


def evaluate_pretrained_model(name: str, *, eps: float | None, norm: str | None,
                              attacks: list[str], out: str | None, overwrite: bool,
                              data_dir: str | None, device: str, progress: bool = False,
                              save_adv: str | None = None, **settings: Any) -> dict[str, Any]:
    """Evaluate the zoo's model `name` (`robustlab.zoo`, its weights' digest checked) on its
    card's dataset, at the card's eps and norm unless `eps` / `norm` are given; the eval file
    records the card's facts under `run.pretrained` (`NAME-eval.json` by default)."""
    from robustlab.zoo import load_pretrained, read_card

    card = read_card(name)  # before any compute: an unknown name lists the known ones
    budget = card["threat_model"]
    evs = _settings(attacks, budget["eps"] if eps is None else eps,
                    budget["norm"] if norm is None else norm, settings)
    path = Path(out) if out else Path(f"{name}-eval.json")
    _claim_outputs(path, evs, overwrite, save_adv)
    dev = resolve_device(device)
    test, classes = _test_split(card["dataset"], data_dir, evs, **card["dataset_options"])
    model = load_pretrained(name, device=str(dev))
    check_model_for_evaluation(model, test.x, test.y, evs, num_classes=classes)
    run = {"path": None, "model_spec": f"pretrained:{name}", "weights": card["weights"]["file"],
           "dataset": card["dataset"], "model": card["model"]["name"], "method": "pretrained",
           "eps": budget["eps"], "norm": budget["norm"], "defense": None, "seed": None,
           "pretrained": {"name": name, "weights_sha256": card["weights"]["sha256"],
                          "clean_acc": card["evaluation"]["clean_acc"],
                          "autoattack_acc": card["evaluation"]["autoattack_acc"],
                          "n": card["evaluation"]["n"]}}
    return _evaluate_and_write(model, test, evs, dev, run, path,
                               title=f"pretrained {name} on {card['dataset']}",
                               progress=progress, save_adv=save_adv)


def _settings(attacks: list[str], eps: float | None, norm: str | None,
              settings: dict[str, Any]) -> EvalSettings:
    """The checked `EvalSettings` (budget, attacks and their options): one `ConfigError`.
    The attacks, the curve and the audit follow the norm unless given (`resolve_switches`:
    a line on stderr says what it switched off)."""
    norm = "linf" if norm is None else norm.lower()
    fields, said = resolve_switches(norm, settings)
    try:
        evs = EvalSettings(attacks=tuple(attacks) or default_attacks(norm, DEFAULT_ATTACKS),
                           eps=float(eps), norm=norm, **fields).validate()
        build_attacks(evs)
    except (EvalSettingsError, AttackError) as err:
        raise ConfigError(str(err)) from None
    for line in said:
        print(line, file=sys.stderr, flush=True)
    return evs


def _claim_outputs(path: Path, evs: EvalSettings, overwrite: bool,
                   save_adv: str | None) -> None:
    claim_output(path, overwrite=overwrite)  # --overwrite replaces an eval JSON, nothing else
    if save_adv is not None:
        check_adv_folder(save_adv, evs.attacks, overwrite=overwrite)


def _evaluate_and_write(model: Any, test: Any, evs: EvalSettings, dev: Any,
                        run: dict[str, Any], path: Path, *, title: str, progress: bool,
                        save_adv: str | None) -> dict[str, Any]:
    x = test.x.to(device=dev, dtype=input_dtype(model))
    result = evaluate_model(model, x, test.y.to(dev), evs, progress=progress,
                            save_adv=save_adv)
    result["run"] = run
    result["training"] = {"complete": True}
    atomic_write_json(path, with_digest(result))  # the report checks its sha256
    print(format_result_table(result, title=title))
    print(f"  wrote {path}\n")
    return result


def _checked_model_and_data(spec: str, weights: str | None,
                            normalize: tuple[list[float], list[float]] | None, dev: Any,
                            dataset: str, data_dir: str | None, evs: EvalSettings
                            ) -> tuple[Any, Any]:
    """The user's model (file, factory, weights) and the test split, and the model checked on
    one batch of it (`check_model_for_evaluation`, as `robustlab.evaluate` does): every
    problem is a one-line `ConfigError` / `UserModelError`, raised before any compute."""
    model = load_user_model(spec, weights=weights, normalize=normalize, device=dev)
    return model, _checked_data(model, dataset, data_dir, evs, normalize=normalize)


def _checked_data(model: Any, dataset: str, data_dir: str | None, evs: EvalSettings, *,
                  normalize: tuple[list[float], list[float]] | None = None) -> Any:
    """`dataset`'s test split (`_test_split`) and the model checked on one batch of it
    (`check_model_for_evaluation`)."""
    test, classes = _test_split(dataset, data_dir, evs, normalize=normalize)
    check_model_for_evaluation(model, test.x, test.y, evs, num_classes=classes)
    return test


def _test_split(dataset: str, data_dir: str | None, evs: EvalSettings, *,
                normalize: tuple[list[float], list[float]] | None = None,
                **load_options: Any) -> tuple[Any, int]:
    """`dataset`'s test split and its number of classes, checked against the settings
    (`--n`, an L2 budget, the channels of `--normalize`)."""
    from robustlab.data import load_dataset

    splits = load_dataset(dataset, data_dir, **load_options)
    test, channels = splits.test, splits.info.channels
    if evs.n is not None and evs.n > len(test):
        raise ConfigError(f"--n: {evs.n} exceeds the {len(test)} test images of {dataset}")
    if evs.norm == "l2":  # as for a run folder (evaluation/runs.py, _check_against_data)
        check_l2_budget("--eps", evs.eps, test.x[0].numel(), where=dataset, error=ConfigError)
    if normalize is not None and len(normalize[0]) != channels:
        raise ConfigError(f"--normalize: {len(normalize[0])} MEAN and STD value(s) given, but "
                          f"{dataset} images have {channels} channel(s); expected {channels} "
                          "comma-separated values each")
    return test, splits.info.num_classes
