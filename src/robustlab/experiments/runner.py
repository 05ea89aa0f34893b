"""`reproduce`: train every run of a preset, evaluate every model, write the report.

Resumable by construction: `train(..., resume=True)` returns a complete run's summary at once
and continues an interrupted one from its last finished epoch; an evaluation whose file for
the same settings exists is skipped. Runs execute in `workers` local processes per device of
`device` (a comma list), each pinned to its device and with `cores // total workers` torch
threads (at most 2 on CUDA), or as Ray tasks (`executor="ray"`); see `devices.py` and
`executors.py`.
"""

from __future__ import annotations

import functools
import shutil
import time
from pathlib import Path

from robustlab.attacks import AttackError
from robustlab.common.checks import check_int
from robustlab.common.digest import with_digest
from robustlab.common.errors import ConfigError
from robustlab.common.files import FileFormatError, Layout, atomic_write_json, read_json
from robustlab.common.vocabulary import EXPERIMENT_FILE, EXPERIMENT_SCHEMA, SUMMARY_FILE
from robustlab.evaluation.attack_runner import build_attacks
from robustlab.evaluation.settings import EvalSettingsError
from robustlab.experiments.devices import (
    Worker,
    executor_workers,
    placed_train,
    record_placement,
)
from robustlab.experiments.executors import check_executor, run_on_workers
from robustlab.experiments.plan import EvalJob, RunJob, describe_jobs, plan_jobs
from robustlab.experiments.presets import Preset
from robustlab.experiments.studies import check_studies, run_studies
from robustlab.runs.folder import (
    RUN_LAYOUT,
    TEMP_FILES,
    RunFolderError,
    check_owned_folder,
)

# Every name reproduce (and the report it writes) puts into an experiment folder; `--overwrite`
# deletes its runs/ only when the folder holds nothing else (runs/ of TensorBoard stays).
EXPERIMENT_LAYOUT: Layout = {
    EXPERIMENT_FILE: None, "report.md": None, "report.html": None, "results.json": None,
    "results.csv": None, TEMP_FILES: None,
    "figures": {"fig*.png": None, TEMP_FILES: None, ".*.tmp.png": None},
    "studies": {"transfer-*.json": None, "transfer-*.png": None, "certify-*.json": None,
                "certify-*.png": None, TEMP_FILES: None},
    "runs": {".*.lock": None, "*": RUN_LAYOUT},  # a run folder, its lock
}


def reproduce(preset: Preset, out: str | Path, *, workers: int = 1, data_dir: str | None = None,
              overwrite: bool = False, model: str | None = None, device: str = "auto",
              report: bool = True, threads: int | None = None,
              executor: str = "local") -> Path:
    """Run `preset` into folder `out` (resuming what is there); returns the report's path
    (report.html) or `out` when `report` is False. `device`: one device or a comma list;
    `workers`: processes per device; `threads` (torch threads per worker) defaults to
    cores // total workers (at most 2 on CUDA); `executor` is "local" (processes) or "ray"."""
    out = Path(out)
    check_int("--workers", workers, 1, error=RunFolderError)
    check_executor(executor)
    devices, pool = executor_workers(device, workers, threads=threads, executor=executor,
                                     jobs=len(plan_jobs(preset, out, model=model)))
    threads = pool[0].threads
    jobs = plan_jobs(preset, out, model=model, data_dir=data_dir,
                     device=pool[0].config_device, threads=threads)
    _validate(preset, jobs, data_dir)
    exp_file = out / EXPERIMENT_FILE
    if not overwrite:
        _check_new_or_experiment(out)
    if exp_file.exists() and not overwrite:
        old_name = _recorded_preset(exp_file)
        if old_name != preset.name:
            raise RunFolderError(f"{out} holds experiment {old_name!r}, not {preset.name!r}; "
                                 "choose another --out or pass --overwrite")
    if overwrite and out.exists():
        check_experiment_folder(out)  # before any compute: only robustlab's own runs go
        shutil.rmtree(out / "runs", ignore_errors=True)
    atomic_write_json(exp_file, {"schema": EXPERIMENT_SCHEMA, "preset": preset.to_dict(),
                                 "model_override": model, "workers": workers,
                                 "devices": list(devices), "threads": threads,
                                 "jobs": describe_jobs(jobs, out)})
    t0 = time.perf_counter()
    print(f"reproduce {preset.name}: {len(jobs)} training runs, "
          f"{sum(len(j.evals) for j in jobs)} evaluations, {len(pool)} worker(s) "
          f"({workers} per device on {','.join(devices)}) x {threads} thread(s), executor "
          f"{executor} -> {out}")
    gpu = devices[0].startswith("cuda")
    for fn, verb in ((_train_job, "trained"), (_eval_job, "evaluated")):
        run_on_workers(executor, jobs, fn,
                       functools.partial(_job_done, verb, len(jobs), exp_file), pool, gpu=gpu)
    print(f"all runs done in {time.perf_counter() - t0:.0f}s")
    if preset.studies.any:
        run_studies(preset, jobs, out, device=devices[0], data_dir=data_dir)
        print(f"studies done in {time.perf_counter() - t0:.0f}s")
    if not report:
        return out
    from robustlab.reporting import write_report

    paths = write_report(out)
    return paths["html"]


def check_experiment_folder(out: Path) -> None:
    """`reproduce --overwrite` deletes `out`/runs only in an experiment folder robustlab wrote:
    every entry a name of EXPERIMENT_LAYOUT and experiment.json parsing as reproduce writes
    it. RunFolderError (one line, naming the first foreign entry) otherwise."""
    check_owned_folder(out, EXPERIMENT_LAYOUT, "experiment folder", _check_experiment_file)


def _check_experiment_file(out: Path) -> None:
    path = out / EXPERIMENT_FILE
    if _only_temp_files(out):
        return  # empty, or a killed first write: nothing to lose
    try:
        data = read_json(path)
    except (OSError, ValueError) as err:
        raise RunFolderError(f"--overwrite: {out} is not a robustlab experiment folder (its "
                             f"{EXPERIMENT_FILE} cannot be read: {err}); refusing to delete "
                             "its runs") from None
    if not isinstance(data, dict) or data.get("schema") != EXPERIMENT_SCHEMA:
        raise RunFolderError(f"--overwrite: {path}: expected an object with schema "
                             f"{EXPERIMENT_SCHEMA!r}, as reproduce writes it; refusing to "
                             f"delete {out / 'runs'}")


def _only_temp_files(out: Path) -> bool:
    return all(p.match(TEMP_FILES) for p in out.iterdir())


def _check_new_or_experiment(out: Path) -> None:
    """Without --overwrite, `out` is new, empty or an experiment folder: reproduce never writes
    its report files into (and its runs/ beside) a folder of someone else's files."""
    if out.is_dir() and not (out / EXPERIMENT_FILE).exists() and not _only_temp_files(out):
        first = min(p.name for p in out.iterdir() if not p.match(TEMP_FILES))
        raise RunFolderError(f"--out {out} already holds files that are not a robustlab "
                             f"experiment (no {EXPERIMENT_FILE}; e.g. {first}); choose an empty "
                             "or new folder")


def _validate(preset: Preset, jobs: list[RunJob], data_dir: str | None) -> None:
    """Every training config, evaluation and study setting, before any compute."""
    from robustlab.training import TrainConfig

    for job in jobs:
        TrainConfig.from_dict(job.train, source=job.name).validate()
        for e in job.evals:
            try:
                build_attacks(e.settings.validate())
            except (EvalSettingsError, AttackError) as err:
                raise ConfigError(f"preset {preset.name}: evaluation of {job.name}: "
                                  f"{err}") from None
    check_studies(preset, data_dir)


def _recorded_preset(exp_file: Path) -> str:
    """The preset name experiment.json records; RunFolderError naming the file when it is not
    the object reproduce writes."""
    try:
        old = read_json(exp_file)
    except FileFormatError as err:
        raise RunFolderError(str(err)) from None
    preset = old.get("preset") if isinstance(old, dict) else None
    if not isinstance(preset, dict) or not isinstance(preset.get("name"), str):
        raise RunFolderError(f"{exp_file}: expected the object reproduce writes, with a "
                             "'preset' object naming the preset; the file is damaged or not "
                             "robustlab's: choose another --out")
    return preset["name"]


def _job_done(verb: str, total: int, exp_file: Path, i: int, job: RunJob, line: str,
              worker: Worker) -> None:
    """A finished job's line (with the worker and device that ran it), and its placement in
    experiment.json."""
    print(f"[{i}/{total}] {verb} {job.name} on {worker.label}: {line}", flush=True)
    record_placement(exp_file, verb, job.name, worker)


def _train_job(job: RunJob, worker: Worker | None = None) -> str:
    from robustlab.training import TrainConfig, train

    cfg = TrainConfig.from_dict(placed_train(job.train, worker), source=job.name)
    t0 = time.perf_counter()
    complete = (job.run_dir / SUMMARY_FILE).is_file()
    result = train(cfg, resume=True)
    how = "cached" if complete else f"{time.perf_counter() - t0:.0f}s"
    return f"test acc {result.summary['test_acc']:.4f} ({how})"


def _eval_job(job: RunJob, worker: Worker | None = None) -> str:
    """Evaluate what the job's eval files lack, at the job's torch threads (restored after:
    an in-process job must not change the thread count, hence the numerics, of what the
    process computes next)."""
    from robustlab.evaluation.runs import read_cached
    from robustlab.training.loop import torch_threads

    train = placed_train(job.train, worker)
    todo: list[EvalJob] = [e for e in job.evals if read_cached(e.path, e.settings) is None]
    if not todo:
        return "cached"
    with torch_threads(train.get("threads")):
        return _evaluate(job, train, todo)


def _evaluate(job: RunJob, train: dict, todo: list[EvalJob]) -> str:
    from robustlab.evaluation.runs import evaluate_loaded_run
    from robustlab.runs.load import load_run

    device, data_dir = train["device"], train["data_dir"]
    loaded = load_run(job.run_dir, device=device, data_dir=data_dir)
    surrogate = (load_run(job.surrogate, device=device, data_dir=data_dir).model
                 if job.surrogate is not None else None)
    parts = []
    for e in todo:
        result = evaluate_loaded_run(loaded, e.settings, surrogate=surrogate)
        result["label"] = e.label
        atomic_write_json(e.path, with_digest(result))  # the report checks its sha256
        flag = " FLAGGED" if result["audit"]["flagged"] else ""
        parts.append(f"{e.label} eps={e.settings.eps:g}: clean {result['clean']['acc']:.3f} "
                     f"worst {result['worst_case']['acc']:.3f} "
                     f"({result['timing']['total_s']:.0f}s){flag}")
    return "; ".join(parts)
