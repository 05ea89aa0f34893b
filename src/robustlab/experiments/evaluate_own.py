"""`robustlab evaluate --model PATH.py:FACTORY --dataset NAME --eps E`: a model robustlab did
not train, attacked and audited exactly as a run folder is (same table, same eval JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustlab.attacks import AttackError
from robustlab.common.device import resolve_device
from robustlab.common.errors import ConfigError
from robustlab.common.files import atomic_write_json
from robustlab.evaluation import (
    EvalSettings,
    EvalSettingsError,
    evaluate_model,
    format_result_table,
)
from robustlab.evaluation.adv_examples import check_adv_folder
from robustlab.evaluation.attack_runner import build_attacks
from robustlab.experiments.evaluate_runs import DEFAULT_ATTACKS, check_writable
from robustlab.models.user import UserModelError, load_user_model
from robustlab.runs.folder import RunFolderError


def evaluate_user_model(spec: str, *, dataset: str | None, weights: str | None,
                        normalize: tuple[list[float], list[float]] | None,
                        eps: float | None, norm: str | None, attacks: list[str],
                        out: str | None, overwrite: bool, data_dir: str | None, device: str,
                        progress: bool = False, save_adv: str | None = None,
                        **settings: Any) -> dict[str, Any]:
    """Evaluate the model `spec` names on `dataset`'s test split; returns the written eval
    dict. `settings` are further `EvalSettings` fields (n, batch_size, seed, audit, ...).
    Every check runs before any compute: the budget, the settings, the output path, the model
    file and its weights, the dataset."""
    if dataset is None:
        raise ConfigError("--dataset: required with --model (the test split to attack, e.g. "
                          "mnist, cifar10; robustlab list datasets)")
    if eps is None:
        raise ConfigError("--eps: required with --model (no default suits every dataset: "
                          "e.g. 0.3 for MNIST, 8/255 = 0.031 for CIFAR-10)")
    try:
        evs = EvalSettings(attacks=tuple(attacks) or DEFAULT_ATTACKS, eps=float(eps),
                           norm=(norm or "linf").lower(), **settings).validate()
        build_attacks(evs)
    except (EvalSettingsError, AttackError) as err:
        raise ConfigError(str(err)) from None
    path = Path(out) if out else Path(f"{Path(spec.partition(':')[0]).stem}-eval.json")
    check_writable(path)
    if path.exists() and not overwrite:
        raise RunFolderError(f"{path} already exists; pass --overwrite to replace it "
                             "(results are never overwritten silently)")
    if save_adv is not None:
        check_adv_folder(save_adv, evs.attacks, overwrite=overwrite)
    dev = resolve_device(device)
    try:
        model = load_user_model(spec, weights=weights, normalize=normalize, device=dev)
    except UserModelError as err:
        raise ConfigError(str(err)) from None
    from robustlab.data import load_dataset

    test = load_dataset(dataset, data_dir).test
    if evs.n is not None and evs.n > len(test):
        raise ConfigError(f"--n: {evs.n} exceeds the {len(test)} test images of {dataset}")
    result = evaluate_model(model, test.x.to(dev), test.y.to(dev), evs, progress=progress,
                            save_adv=save_adv)
    result["run"] = {"path": None, "model_spec": spec, "weights": weights, "dataset": dataset,
                     "model": type(model).__name__, "method": "user", "eps": None,
                     "norm": evs.norm, "defense": None, "seed": None}
    result["training"] = {"complete": True}
    atomic_write_json(path, result)
    print(format_result_table(result, title=f"{spec} on {dataset}"))
    print(f"  wrote {path}\n")
    return result
