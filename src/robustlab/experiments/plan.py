"""Expand a `Preset` into concrete jobs: training configs, run folders and evaluations.

Layout of an experiment folder OUT:

    OUT/experiment.json                       the preset as run + the job list (written first)
    OUT/runs/<dataset>-<model>-<method>[-eps<eps>]-s<seed>/   one run folder per training run
    OUT/runs/<run>/eval/<label>-<settings key>.json           one eval file per budget
    OUT/report.md, report.html, figures/, results.json, results.csv   (robustlab report OUT)

Methods that take no budget (standard, lipschitz) are trained once per seed and evaluated
under every budget; the others are trained once per budget and evaluated under it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustlab.evaluation.settings import EvalSettings
from robustlab.experiments.presets import Preset


@dataclass
class EvalJob:
    label: str  # the budget's name ("paper" / "standard")
    settings: EvalSettings
    path: Path


@dataclass
class RunJob:
    """One training run and the evaluations of its model."""

    name: str
    train: dict[str, Any]  # TrainConfig fields
    run_dir: Path
    role: str
    evals: list[EvalJob] = field(default_factory=list)
    surrogate: Path | None = None  # a standard run of the same dataset/model/seed (transfer)


def eval_file(run_dir: Path, label: str, settings: EvalSettings) -> Path:
    return run_dir / "eval" / f"{label}-{settings.key()}.json"


def plan_jobs(preset: Preset, out: Path, *, model: str | None = None,
              data_dir: str | None = None, device: str = "auto",
              threads: int | None = None) -> list[RunJob]:
    """Every training run of `preset` (standard runs first) with its evaluations."""
    import robustlab.training.methods  # noqa: F401  (fills the registry)
    from robustlab.registry import METHODS

    jobs: list[RunJob] = []
    ev = preset.eval
    for ds in preset.datasets:
        arch = model or ds.model
        for seed in preset.seeds:
            std_dir = None
            for mp in sorted(preset.methods, key=lambda m: m.method != "standard"):
                needs_eps = bool(getattr(METHODS.get(mp.method), "needs_eps", False))
                budgets = ds.budgets if needs_eps else ((None, None),)
                for label, eps in budgets:
                    tag = "" if eps is None else f"-eps{eps:.4g}"
                    name = f"{ds.dataset}-{arch}-{mp.method}{tag}-s{seed}"
                    run_dir = out / "runs" / name
                    train = {"dataset": ds.dataset, "model": arch, "method": mp.method,
                             "method_options": dict(mp.options), "eps": eps, "norm": ds.norm,
                             "epochs": preset.epochs, "batch_size": preset.batch_size,
                             "lr": preset.lr, "seed": seed, "val_size": preset.val_size,
                             "train_size": preset.train_size, "progress": False,
                             "out_dir": str(run_dir), "data_dir": data_dir, "device": device,
                             "threads": threads}
                    job = RunJob(name, train, run_dir, mp.role,
                                 surrogate=std_dir if mp.method != "standard" else None)
                    eval_budgets = ds.budgets if eps is None else ((label, eps),)
                    for blabel, beps in eval_budgets:
                        settings = EvalSettings(
                            attacks=tuple(ev.attacks), eps=float(beps), norm=ds.norm, n=ev.n,
                            batch_size=ev.batch_size, seed=0, curve_factors=ev.curve_factors,
                            curve_n=ev.curve_n, audit=ev.audit, audit_n=ev.audit_n,
                            audit_square_queries=ev.audit_square_queries,
                            attack_options={k: dict(v) for k, v in ev.attack_options.items()
                                            if k in ev.attacks},
                            label=blabel)
                        job.evals.append(EvalJob(blabel, settings,
                                                 eval_file(run_dir, blabel, settings)))
                    if mp.method == "standard":
                        std_dir = run_dir
                    jobs.append(job)
    return jobs


def describe_jobs(jobs: list[RunJob], out: Path) -> list[dict[str, Any]]:
    """JSON-ready job list for OUT/experiment.json (what the report reads; paths relative
    to OUT so the folder can be moved)."""
    def rel(p: Path) -> str:
        return str(Path(p).relative_to(out))

    return [{"name": j.name, "run_dir": rel(j.run_dir), "role": j.role,
             "train": {k: v for k, v in j.train.items() if k not in ("out_dir", "data_dir")},
             "evals": [{"label": e.label, "eps": e.settings.eps, "path": rel(e.path),
                        "settings_key": e.settings.key()} for e in j.evals]}
            for j in jobs]
