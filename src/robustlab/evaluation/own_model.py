"""`robustlab evaluate --model PATH.py:FACTORY --dataset NAME --eps E`: a model robustlab did
not train, attacked and audited exactly as a run folder is (same table, same eval JSON)."""

from __future__ import annotations

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
    try:
        evs = EvalSettings(attacks=tuple(attacks) or DEFAULT_ATTACKS, eps=float(eps),
                           norm=("linf" if norm is None else norm).lower(),
                           **settings).validate()
        build_attacks(evs)
    except (EvalSettingsError, AttackError) as err:
        raise ConfigError(str(err)) from None
    path = Path(out) if out else Path(f"{Path(spec.partition(':')[0]).stem}-eval.json")
    claim_output(path, overwrite=overwrite)  # --overwrite replaces an eval JSON, nothing else
    if save_adv is not None:
        check_adv_folder(save_adv, evs.attacks, overwrite=overwrite)
    dev = resolve_device(device)
    model, test = _checked_model_and_data(spec, weights, normalize, dev, dataset, data_dir,
                                          evs)
    x = test.x.to(device=dev, dtype=input_dtype(model))
    result = evaluate_model(model, x, test.y.to(dev), evs, progress=progress,
                            save_adv=save_adv)
    result["run"] = {"path": None, "model_spec": spec, "weights": weights, "dataset": dataset,
                     "model": type(model).__name__, "method": "user", "eps": None,
                     "norm": evs.norm, "defense": None, "seed": None}
    result["training"] = {"complete": True}
    atomic_write_json(path, with_digest(result))  # the report checks its sha256
    print(format_result_table(result, title=f"{spec} on {dataset}"))
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
    from robustlab.data import load_dataset

    splits = load_dataset(dataset, data_dir)
    test, channels = splits.test, splits.info.channels
    if evs.n is not None and evs.n > len(test):
        raise ConfigError(f"--n: {evs.n} exceeds the {len(test)} test images of {dataset}")
    if evs.norm == "l2":  # as for a run folder (evaluation/runs.py, _check_against_data)
        check_l2_budget("--eps", evs.eps, test.x[0].numel(), where=dataset, error=ConfigError)
    if normalize is not None and len(normalize[0]) != channels:
        raise ConfigError(f"--normalize: {len(normalize[0])} MEAN and STD value(s) given, but "
                          f"{dataset} images have {channels} channel(s); expected {channels} "
                          "comma-separated values each")
    check_model_for_evaluation(model, test.x, test.y, evs, num_classes=splits.info.num_classes)
    return model, test
