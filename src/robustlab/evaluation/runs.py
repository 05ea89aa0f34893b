"""`robustlab evaluate RUN...`: evaluate run folders, print a table, write versioned eval JSON."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from robustlab.attacks import AttackError
from robustlab.common.checks import check_choice, check_l2_budget
from robustlab.common.device import resolve_device
from robustlab.common.digest import check_digest, with_digest
from robustlab.common.errors import ConfigError
from robustlab.common.files import atomic_write_json, read_json, replace_refusal
from robustlab.common.sharding import Shard
from robustlab.common.vocabulary import AVERAGED_WEIGHTS_FILE as AVERAGED_WEIGHTS
from robustlab.common.vocabulary import EVAL_FILE as DEFAULT_EVAL_FILE
from robustlab.common.vocabulary import RUN_WEIGHTS, WEIGHTS_AVERAGED, WEIGHTS_LAST
from robustlab.common.vocabulary import WEIGHTS_FILE as WEIGHTS
from robustlab.evaluation import (
    EvalSettings,
    EvalSettingsError,
    evaluate_model,
    format_result_table,
)
from robustlab.evaluation.adv_examples import check_adv_folder
from robustlab.evaluation.attack_runner import build_attacks
from robustlab.evaluation.partial import partial_path
from robustlab.evaluation.schema import SCHEMA_VERSION, EvalFileError, check_eval_dict
from robustlab.evaluation.settings import default_attacks, resolve_switches
from robustlab.runs.folder import RunFolderError, hold_lock, lock_path
from robustlab.training.distributed import init_distributed, rank_device, shutdown

DEFAULT_ATTACKS = ("fgsm", "pgd")


def evaluate_runs(runs: list[str], *, attacks: list[str], eps: float | None, norm: str | None,
                  n: int | None, batch_size: int, seed: int, device: str, data_dir: str | None,
                  out: str | None, overwrite: bool, non_adaptive: bool,
                  progress: bool = False, save_adv: str | None = None,
                  run_weights: str | None = None, **extra: Any) -> list[dict]:
    """Evaluate each run folder (the CLI hook); returns the written eval dicts. `extra` are
    further `EvalSettings` fields (audit, curve_attack, attack_options, ...). `run_weights`:
    "averaged" (None: the default, said only for runs that average) or "last", as
    `load_run(weights=...)`; the eval file's `weights` says which were evaluated.

    Every check happens before any compute: the run folders exist, the settings are valid, and
    no output file would be overwritten without `overwrite`.
    """
    from robustlab.runs.folder import RunFolder

    if run_weights is not None:
        check_choice("--run-weights", run_weights, RUN_WEIGHTS, error=ConfigError)
    if out is not None and len(runs) > 1:
        raise RunFolderError(f"--out names one file but {len(runs)} runs were given; omit it "
                             f"to write RUN/{DEFAULT_EVAL_FILE} for each run")
    resolved = [Path(r).resolve() for r in runs]
    twice = next((r for r, p in zip(runs, resolved, strict=True) if resolved.count(p) > 1), None)
    if twice is not None:  # its two evaluations would write one file
        raise RunFolderError(f"run {twice} is given twice; give each run folder once")
    with contextlib.ExitStack() as locks:  # held until every result is written
        plans, said = [], []
        for run in runs:
            folder = RunFolder(Path(run))
            cfg = folder.read_config()
            _lock_run(locks, folder)
            settings = _settings(run, cfg, attacks=attacks, eps=eps, norm=norm, n=n,
                                 batch_size=batch_size, seed=seed, extra=extra, said=said)
            path = Path(out) if out else folder.file(DEFAULT_EVAL_FILE)
            claim_output(path, overwrite=overwrite)  # under the lock: no race with a twin
            if not folder.is_complete:
                print(f"warning: run {run} is not complete (no summary.json): evaluating the "
                      f"weights of its last finished epoch ({len(folder.read_metrics())} of "
                      f"{cfg.get('epochs')}); the result is marked unfinished and the report "
                      "shows it apart", file=sys.stderr)
            adv_dir = None
            if save_adv is not None:
                adv_dir = Path(save_adv) / folder.path.name if len(runs) > 1 else Path(save_adv)
                check_adv_folder(adv_dir, settings.attacks, overwrite=overwrite)
            plans.append((run, settings, path, adv_dir))
        if int(os.environ.get("RANK", "0")) == 0:
            for line in said:  # what the threat model switched off, before any compute
                print(line, file=sys.stderr, flush=True)
        dev = resolve_device(device)
        dist = init_distributed(dev)  # under torchrun: every rank attacks its share of batches
        try:
            return _evaluate_plans(plans, runs, device=str(rank_device(dev, dist)),
                                   data_dir=data_dir, non_adaptive=non_adaptive,
                                   shard=Shard(dist.rank, dist.world_size), progress=progress,
                                   run_weights=run_weights)
        finally:
            shutdown(dist)


def _settings(run: str, cfg: dict[str, Any], *, attacks: list[str], eps: float | None,
              norm: str | None, n: int | None, batch_size: int, seed: int,
              extra: dict[str, Any], said: list[str] | None = None) -> EvalSettings:
    """The run's validated `EvalSettings` (eps and norm from its config unless given; the
    attacks, the curve and the audit from the norm unless given: `resolve_switches`, whose
    lines on what the norm switched off join `said`)."""
    run_eps = eps if eps is not None else cfg.get("eps")
    if run_eps is None:
        raise RunFolderError(f"run {run} was trained without eps ({cfg.get('method')}); "
                             "pass --eps (e.g. 0.3 for MNIST, 0.1 Fashion-MNIST)")
    run_norm = _run_norm(norm, cfg)
    fields, off = resolve_switches(run_norm, extra)
    if said is not None:
        said += [line for line in off if line not in said]
    try:
        settings = EvalSettings(attacks=tuple(attacks) or default_attacks(run_norm,
                                                                          DEFAULT_ATTACKS),
                                eps=float(run_eps), norm=run_norm, n=n,
                                batch_size=batch_size, seed=seed, **fields).validate()
        build_attacks(settings)
    except (EvalSettingsError, AttackError) as err:
        raise ConfigError(str(err)) from None
    return settings


def _run_norm(norm: str | None, cfg: dict[str, Any]) -> str:
    """--norm as given, case-insensitive as --help says (an empty one is refused by the
    settings' check, not replaced), else the norm the run was trained under."""
    if norm is None:
        return cfg.get("norm", "linf")
    return norm.strip().lower() if isinstance(norm, str) else norm


def _lock_run(locks: contextlib.ExitStack, folder: Any) -> None:
    """One writer per run: the run folder's lock (the one `robustlab train` holds for its whole
    run) is held from the checks until the eval file is written. A second `evaluate` of the
    same run, or an `evaluate` of a run still training, is refused at once, naming the holder
    (ranks > 0 of a torchrun evaluation only read; rank 0 holds the lock for them)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        locks.enter_context(hold_lock(folder.path))
    except PermissionError:
        return  # a run folder nobody may write beside: no train can hold it; --out elsewhere
    except RunFolderError as err:
        if "in use" not in str(err):  # not a holder but a bad lock file: hold_lock's own line
            raise
        raise RunFolderError(
            f"cannot evaluate run {folder.path} now: another robustlab process "
            f"(pid {_lock_holder(folder.path)}) holds its lock, training or evaluating it; "
            "run evaluate again once it has finished (two processes never write one "
            "run's results at once)") from None


def _lock_holder(target: Path) -> str:
    """The pid `hold_lock` wrote into the lock file ("?" if unreadable)."""
    try:
        text = lock_path(target.resolve()).read_text(errors="replace").strip()
    except OSError:
        return "?"
    return text[:20] or "?"


def _evaluate_plans(plans: list[tuple[str, EvalSettings, Path, Path | None]], runs: list[str], *,
                    device: str, data_dir: str | None, non_adaptive: bool, shard: Shard,
                    progress: bool = False, run_weights: str | None = None) -> list[dict]:
    from robustlab.runs.load import load_run

    results = []
    for run, settings, path, adv_dir in plans:
        loaded = load_run(run, device=device, data_dir=data_dir,
                          weights=run_weights or WEIGHTS_AVERAGED)
        if shard.rank == 0:
            _say_weights(run, loaded, asked=run_weights)
        _check_against_data(settings, loaded.data.test, run)
        surrogate = _surrogate_for(loaded, runs, device, data_dir)
        if progress and shard.rank == 0:
            print(f"evaluating {run}", file=sys.stderr, flush=True)
        result = evaluate_loaded_run(loaded, settings, surrogate=surrogate,
                                     non_adaptive=non_adaptive, shard=shard, progress=progress,
                                     save_adv=adv_dir, resume=path)
        result["world_size"] = shard.world_size
        results.append(result)
        if shard.rank != 0:
            continue  # every rank holds the same result; rank 0 alone writes and prints
        atomic_write_json(path, with_digest(result))  # the report checks its sha256
        partial_path(path).unlink(missing_ok=True)  # its finished batches: no longer needed
        print(format_result_table(result, title=f"{run}  ({_describe(result['run'])})"))
        if "non_adaptive" in result:
            print(format_result_table(result["non_adaptive"],
                                      title=f"{run}  NON-ADAPTIVE numbers (for comparison only)"))
        tr = result["training"]
        if tr.get("train_time_s") is not None:
            print(f"  training: {tr['train_time_s']:.1f}s total, "
                  f"{tr['epoch_time_s_mean']:.1f}s/epoch, peak memory {tr['peak_mem_mb']:.0f} MiB")
        print(f"  wrote {path}\n")
    return results


def _say_weights(run: str, loaded: Any, *, asked: str | None) -> None:
    """On stderr, which weights of `run` are evaluated, when it has a choice (or asked for
    averaged weights it does not have); silent for a run that did not average, by default."""
    averaging = loaded.cfg.averaging
    if loaded.weights == WEIGHTS_AVERAGED:
        print(f"run {run}: evaluating its averaged weights ({averaging}, {AVERAGED_WEIGHTS}); "
              "--run-weights last evaluates the last iterate", file=sys.stderr)
    elif averaging is not None:
        print(f"run {run}: evaluating its last weights ({WEIGHTS}), not its {averaging} "
              "average", file=sys.stderr)
    elif asked == WEIGHTS_AVERAGED:
        print(f"run {run} trained without weight averaging (no ema or swa_start): evaluating "
              f"its last weights ({WEIGHTS})", file=sys.stderr)


def claim_output(path: Path, *, overwrite: bool,
                 is_ours: Callable[[Path], bool] | None = None,
                 beside: Sequence[Path] = ()) -> None:
    """Before any compute: `path` can be written; it (and `beside`, the files written next to
    it) does not exist unless `overwrite`; and what `--overwrite` would replace is a file
    robustlab wrote (`is_ours`, by default an eval JSON; `check_replaceable`)."""
    check_writable(path)
    for p in (path, *beside):
        if p.exists() and not overwrite:
            raise RunFolderError(f"{p} already exists; pass --overwrite to replace it "
                                 "(results are never overwritten silently)")
    check_replaceable(path, is_ours)


def check_writable(path: Path) -> None:
    """Fail before any compute if the eval file cannot be written at `path`."""
    if path.is_dir():
        raise RunFolderError(f"--out {path} is a folder; expected a JSON file path")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunFolderError(f"--out {path}: cannot create {parent} ({err.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out {path}: {parent} is not writable by this user")


def check_replaceable(path: Path, is_ours: Callable[[Path], bool] | None = None) -> None:
    """Before `--overwrite` replaces `path`: a file robustlab wrote (`is_ours`, by default an
    eval JSON of this schema), never a folder, a link or someone else's file."""
    refusal = replace_refusal(path, is_ours or is_eval_file)
    if refusal is not None:
        raise RunFolderError(f"--overwrite: {refusal}")


def is_eval_file(path: Path) -> bool:
    """An eval JSON robustlab wrote: its schema is robustlab.eval/* (any version, any values:
    a damaged or outdated result may still be replaced by a new one)."""
    data = read_json(path)
    return isinstance(data, dict) and str(data.get("schema")).split("/")[0] == \
        SCHEMA_VERSION.split("/")[0]


def _check_against_data(settings: EvalSettings, test: Any, run: str) -> None:
    """Settings that only the data can check: --n within the test set, an L2 budget within the
    diameter sqrt(C*H*W) of the image cube."""
    if settings.n is not None and settings.n > len(test):
        raise ConfigError(f"--n: {settings.n} exceeds the {len(test)} test images of run {run}; "
                          f"pass at most {len(test)} (or omit --n for all of them)")
    if settings.norm == "l2":  # the one check of evaluate --model and transfer too
        check_l2_budget("--eps", settings.eps, test.x[0].numel(), where=f"run {run}",
                        error=ConfigError)


def evaluate_loaded_run(loaded: Any, settings: EvalSettings, *, surrogate: Any = None,
                        non_adaptive: bool = False, shard: Shard | None = None,
                        progress: bool = False, save_adv: Path | None = None,
                        resume: Path | None = None) -> dict[str, Any]:
    """Evaluate a `LoadedRun` (see `robustlab.runs.load`) and attach run facts. `resume`: the
    eval file's path, beside which finished batches are kept (`evaluation.partial`)."""
    test = loaded.data.test
    k = loaded.data.info.num_classes
    result = evaluate_model(loaded.model, test.x, test.y, settings, surrogate=surrogate,
                            num_classes=k, shard=shard, progress=progress, save_adv=save_adv,
                            resume=resume)
    if non_adaptive:
        plain = evaluate_model(loaded.model, test.x, test.y, _replace(settings, adaptive=False),
                               surrogate=surrogate, num_classes=k, shard=shard,
                               progress=progress)
        plain.pop("per_sample")
        result["non_adaptive"] = plain
    result["run"] = run_facts(loaded.folder.path, loaded.cfg.to_dict())
    result["training"] = training_facts(loaded.folder)
    result["weights"] = getattr(loaded, "weights", WEIGHTS_LAST)  # which of the run's weights
    if result["weights"] == WEIGHTS_AVERAGED:
        result["averaging"] = loaded.cfg.averaging  # ema or swa
    return result


def run_facts(path: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    keys = ("dataset", "model", "method", "method_options", "eps", "norm", "defense",
            "defense_options", "epochs", "batch_size", "lr", "seed", "train_size", "val_size")
    return {"path": str(path), **{k: cfg.get(k) for k in keys}}


def training_facts(folder: Any) -> dict[str, Any]:
    """The run's summary facts; `complete` False (and `epochs_done`) for an unfinished run."""
    complete = folder.is_complete
    summary = folder.read_summary() if complete else {}
    keys = ("test_acc", "train_time_s", "epoch_time_s_mean", "peak_mem_mb", "epochs", "n_train",
            "n_params")
    facts = {k: summary.get(k) for k in keys}
    if "test_acc_last" in summary:  # a run that averaged: test_acc is the averaged weights'
        facts["test_acc_last"] = summary["test_acc_last"]
    facts["complete"] = complete
    if not complete:
        facts["epochs_done"] = len(folder.read_metrics())
    return facts


def read_cached(path: Path, settings: EvalSettings) -> dict[str, Any] | None:
    """The eval dict at `path` if it exists and was computed with exactly `settings`."""
    if not path.is_file():
        return None
    try:
        data = check_eval_dict(read_json(path), str(path))
    except (EvalFileError, ValueError):
        return None
    check_digest(data, str(path))  # an edited result is refused, not silently recomputed
    return data if data.get("settings_key") == settings.key() else None


def _replace(settings: EvalSettings, **changes: Any) -> EvalSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def _surrogate_for(loaded: Any, runs: list[str], device: str, data_dir: str | None) -> Any:
    """A `standard` run of the same dataset among `runs` (not this one), for transfer attacks."""
    from robustlab.runs.folder import RunFolder
    from robustlab.runs.load import load_run

    me = loaded.folder.path.resolve()
    for run in runs:
        if Path(run).resolve() == me:
            continue
        try:
            cfg = RunFolder(Path(run)).read_config()
        except RunFolderError:
            continue
        if cfg.get("method") == "standard" and cfg.get("dataset") == loaded.cfg.dataset \
                and not cfg.get("defense"):
            return load_run(run, device=device, data_dir=data_dir).model
    return None


def _describe(run: dict[str, Any]) -> str:
    eps = "" if run.get("eps") is None else f" eps={run['eps']:g}"
    defense = f" defense={run['defense']}" if run.get("defense") else ""
    return f"{run['dataset']}/{run['model']}/{run['method']}{eps}{defense} seed={run['seed']}"
