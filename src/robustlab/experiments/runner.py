"""`reproduce`: train every run of a preset, evaluate every model, write the report.

Resumable by construction: `train(..., resume=True)` returns a complete run's summary at once
and continues an interrupted one from its last finished epoch; an evaluation whose file for
the same settings exists is skipped. Runs execute in `workers` local processes, each with
`cores // workers` torch threads, or as Ray tasks (`executor="ray"`, see `executors.py`).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path

from robustlab.attacks import AttackError
from robustlab.common.checks import check_int
from robustlab.common.errors import ConfigError
from robustlab.common.files import atomic_write_json, read_json
from robustlab.evaluation.attack_runner import build_attacks
from robustlab.evaluation.settings import EvalSettingsError
from robustlab.experiments.executors import check_executor, run_jobs
from robustlab.experiments.plan import EvalJob, RunJob, describe_jobs, plan_jobs
from robustlab.experiments.presets import Preset
from robustlab.runs.folder import RunFolderError

EXPERIMENT_FILE = "experiment.json"


def reproduce(preset: Preset, out: str | Path, *, workers: int = 1, data_dir: str | None = None,
              overwrite: bool = False, model: str | None = None, device: str = "auto",
              report: bool = True, threads: int | None = None,
              executor: str = "local") -> Path:
    """Run `preset` into folder `out` (resuming what is there); returns the report's path
    (report.html) or `out` when `report` is False. `threads` (torch threads per worker)
    defaults to cores // workers; `executor` is "local" (processes) or "ray"."""
    from robustlab.training import TrainConfig

    out = Path(out)
    check_int("--workers", workers, 1, error=RunFolderError)
    check_executor(executor)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    jobs = plan_jobs(preset, out, model=model, data_dir=data_dir, device=device,
                     threads=threads)
    for job in jobs:  # validate every config before any compute
        TrainConfig.from_dict(job.train, source=job.name).validate()
        for e in job.evals:
            try:
                build_attacks(e.settings.validate())
            except (EvalSettingsError, AttackError) as err:
                raise ConfigError(f"preset {preset.name}: evaluation of {job.name}: "
                                  f"{err}") from None
    exp_file = out / EXPERIMENT_FILE
    if exp_file.exists() and not overwrite:
        old = read_json(exp_file)
        if old.get("preset", {}).get("name") != preset.name:
            raise RunFolderError(f"{out} holds experiment {old.get('preset', {}).get('name')!r}, "
                                 f"not {preset.name!r}; choose another --out or pass --overwrite")
    if overwrite and out.exists():
        shutil.rmtree(out / "runs", ignore_errors=True)
    atomic_write_json(exp_file, {"schema": "robustlab.experiment/1", "preset": preset.to_dict(),
                                 "model_override": model, "workers": workers,
                                 "jobs": describe_jobs(jobs, out)})
    t0 = time.perf_counter()
    print(f"reproduce {preset.name}: {len(jobs)} training runs, "
          f"{sum(len(j.evals) for j in jobs)} evaluations, {workers} worker(s) x {threads} "
          f"thread(s), executor {executor} -> {out}")
    gpu = str(device).startswith("cuda")
    for fn, verb in ((_train_job, "trained"), (_eval_job, "evaluated")):
        run_jobs(executor, jobs, fn, functools.partial(_print_done, verb, len(jobs)),
                 workers=workers, threads=threads, gpu=gpu)
    print(f"all runs done in {time.perf_counter() - t0:.0f}s")
    if not report:
        return out
    from robustlab.reporting import write_report

    paths = write_report(out)
    return paths["html"]


def _print_done(verb: str, total: int, i: int, job: RunJob, line: str) -> None:
    print(f"[{i}/{total}] {verb} {job.name}: {line}", flush=True)


def _train_job(job: RunJob) -> str:
    from robustlab.training import TrainConfig, train

    cfg = TrainConfig.from_dict(job.train, source=job.name)
    t0 = time.perf_counter()
    complete = (job.run_dir / "summary.json").is_file()
    result = train(cfg, resume=True)
    how = "cached" if complete else f"{time.perf_counter() - t0:.0f}s"
    return f"test acc {result.summary['test_acc']:.4f} ({how})"


def _eval_job(job: RunJob) -> str:
    import torch

    from robustlab.experiments.evaluate_runs import evaluate_loaded_run, read_cached
    from robustlab.runs.load import load_run

    if job.train.get("threads"):
        torch.set_num_threads(job.train["threads"])
    todo: list[EvalJob] = [e for e in job.evals if read_cached(e.path, e.settings) is None]
    if not todo:
        return "cached"
    device, data_dir = job.train["device"], job.train["data_dir"]
    loaded = load_run(job.run_dir, device=device, data_dir=data_dir)
    surrogate = (load_run(job.surrogate, device=device, data_dir=data_dir).model
                 if job.surrogate is not None else None)
    parts = []
    for e in todo:
        result = evaluate_loaded_run(loaded, e.settings, surrogate=surrogate)
        result["label"] = e.label
        atomic_write_json(e.path, result)
        flag = " FLAGGED" if result["audit"]["flagged"] else ""
        parts.append(f"{e.label} eps={e.settings.eps:g}: clean {result['clean']['acc']:.3f} "
                     f"worst {result['worst_case']['acc']:.3f} "
                     f"({result['timing']['total_s']:.0f}s){flag}")
    return "; ".join(parts)
