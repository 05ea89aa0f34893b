"""Expand a `Preset` into concrete jobs: training configs, run folders and evaluations.

Layout of an experiment folder OUT:

    OUT/experiment.json                       the preset as run + the job list (written first)
    OUT/runs/<dataset>-<model>-<method>[-eps<eps>]-s<seed>/   one run folder per training run
    OUT/runs/<run>/eval/<label>-<settings key>.json           one eval file per budget
    OUT/report.md, report.html, figures/, results.json, results.csv   (robustlab report OUT)

Methods that take no budget (standard, lipschitz) are trained once per seed and evaluated
under every budget; the others are trained once per budget and evaluated under it. Each
protocol of the preset (`paper`: the paper's hyper-parameters for every method; `recipe`: each
method's working recipe, `robustlab.training.recipes`, with the same epochs and warm-up for
all) trains its own runs; `recipe` runs carry `-recipe` in their names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from robustlab.common.errors import ConfigError
from robustlab.common.vocabulary import CERTIFY_ROLE, PATCH_LABEL
from robustlab.evaluation.settings import EvalSettings, default_attacks, resolve_switches
from robustlab.experiments.presets import PROTOCOL_RECIPES, MethodPlan, Preset
from robustlab.training.recipes import configure


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
    protocol: str = "paper"  # the preset protocol it trains under (PROTOCOL_RECIPES' keys)


def eval_file(run_dir: Path, label: str, settings: EvalSettings) -> Path:
    return run_dir / "eval" / f"{label}-{settings.key()}.json"


def plan_jobs(preset: Preset, out: Path, *, model: str | None = None,
              data_dir: str | None = None, device: str = "auto",
              threads: int | None = None) -> list[RunJob]:
    """Every training run of `preset` (standard runs first, per dataset, protocol and seed)
    with its evaluations."""
    from robustlab.plugins import load_plugins
    from robustlab.registry import METHODS

    load_plugins()

    machine = {"data_dir": data_dir, "device": device, "threads": threads}
    methods = sorted(preset.methods, key=lambda m: m.method != "standard")
    jobs: list[RunJob] = []
    for ds, protocol, seed in product(preset.datasets, preset.protocols, preset.seeds):
        arch = model or ds.model
        std_dir = None
        budgets = preset.budgets_of(ds, protocol)
        for mp in methods:
            needs_eps = bool(getattr(METHODS.get(mp.method), "needs_eps", False))
            for label, eps in (budgets if needs_eps else ((None, None),)):
                tag = "" if eps is None else f"-eps{eps:.4g}"
                suffix = "" if protocol == "paper" else f"-{protocol}"
                name = f"{ds.dataset}-{arch}-{mp.method}{tag}{suffix}-s{seed}"
                run_dir = out / "runs" / name
                train = _train_config(preset, ds, arch, mp, eps, seed, protocol, name,
                                      run_dir, machine)
                job = RunJob(name, train, run_dir, mp.role,
                             surrogate=std_dir if mp.method != "standard" else None,
                             protocol=protocol)
                job_budgets = budgets if eps is None else ((label, eps),)
                job.evals = (_eval_jobs(preset.eval, ds, run_dir, job_budgets)
                             + _patch_jobs(preset, ds, run_dir, job_budgets)
                             + _threat_model_jobs(preset.eval, ds, run_dir))
                if mp.method == "standard":
                    std_dir = run_dir
                jobs.append(job)
        if preset.studies.certify and seed == preset.seeds[0] and protocol == _noise_protocol(
                preset):
            jobs.append(_certify_run(preset, ds, arch, seed, protocol, out, machine))
    return jobs


def _noise_protocol(preset: Preset) -> str:
    """The protocol the certify study's noise-trained run uses: `recipe` if the preset has it
    (a run that learns), else its first."""
    return "recipe" if "recipe" in preset.protocols else preset.protocols[0]


def _certify_run(preset: Preset, ds, arch: str, seed: int, protocol: str, out: Path,
                 machine: dict[str, Any]) -> RunJob:
    sigma = preset.studies.certify_sigma
    suffix = "" if protocol == "paper" else f"-{protocol}"
    name = f"{ds.dataset}-{arch}-gaussian-aug-sigma{sigma:g}{suffix}-s{seed}"
    run_dir = out / "runs" / name
    mp = MethodPlan("gaussian-aug", {"sigma": sigma})
    train = _train_config(preset, ds, arch, mp, None, seed, protocol, name, run_dir, machine)
    return RunJob(name, train, run_dir, CERTIFY_ROLE, protocol=protocol)


def _patch_jobs(preset: Preset, ds, run_dir: Path, budgets) -> list[EvalJob]:
    """The patch study's evaluation of one run (empty unless `studies.patch` and the run is
    evaluated at one of `studies.patch_budgets`): unrestricted patch values (linf eps 1), no
    eps curve or audit (a patch's threat model is its window, not an eps-ball)."""
    st = preset.studies
    if not st.patch or not any(label in st.patch_budgets for label, _ in budgets):
        return []
    settings = EvalSettings(
        attacks=tuple(st.patch_attacks), eps=1.0, norm="linf", n=st.patch_n,
        batch_size=preset.eval.batch_size, seed=0, curve_attack=None, curve_factors=(),
        audit=False, attack_options={a: {"size": st.patch_size} for a in st.patch_attacks},
        label=PATCH_LABEL)
    return [EvalJob(PATCH_LABEL, settings, eval_file(run_dir, PATCH_LABEL, settings))]


def _train_config(preset: Preset, ds, arch: str, mp, eps: float | None, seed: int,
                  protocol: str, name: str, run_dir: Path, machine: dict[str, Any]
                  ) -> dict[str, Any]:
    """The run's TrainConfig fields: what the preset fixes, the rest from the protocol's
    recipe (`paper`: the preset's lr and batch size, the paper's optimiser; `recipe`: the
    dataset's working recipe, same epochs and warm-up share for every method)."""
    fields = {"dataset": ds.dataset, "model": arch, "method": mp.method,
              "method_options": dict(mp.options), "eps": eps, "norm": ds.norm,
              "epochs": preset.epochs, "seed": seed, "val_size": preset.val_size,
              "train_size": preset.train_size, "progress": False, "out_dir": str(run_dir),
              **machine}
    if protocol == "paper":
        fields.update(batch_size=preset.batch_size, lr=preset.lr)
    return configure(fields, PROTOCOL_RECIPES[protocol],
                     source=f"preset {preset.name}: {name}").to_dict()


def _eval_jobs(ev, ds, run_dir: Path, budgets) -> list[EvalJob]:
    """The run's evaluations at its budgets, under the dataset's norm: the EvalPlan's attacks
    (at l1 / l0 the norm's defaults), the curve and the audit where the norm has their
    attacks (`_at_norm`; at linf / l2 the settings, and so the files' keys, are as always)."""
    out = []
    for label, eps in budgets:
        attacks, options, switches = _at_norm(ev, ds.norm, (), {})
        settings = EvalSettings(
            attacks=attacks, eps=float(eps), norm=ds.norm, n=ev.n,
            batch_size=ev.batch_size, seed=0, curve_factors=ev.curve_factors,
            curve_n=ev.curve_n, audit_n=ev.audit_n,
            audit_square_queries=ev.audit_square_queries, attack_options=options,
            label=label, **switches)
        out.append(EvalJob(label, settings, eval_file(run_dir, label, settings)))
    return out


def _at_norm(ev, norm: str, attacks: tuple[str, ...], options: dict[str, dict[str, Any]]
             ) -> tuple[tuple[str, ...], dict[str, dict[str, Any]], dict[str, Any]]:
    """An evaluation's attacks at `norm` (`attacks`, else the EvalPlan's, else at l1 / l0
    the norm's defaults), their options (the EvalPlan's, updated by `options`) and the
    curve / audit keywords (`resolve_switches`: off where the norm has no attack for them)."""
    attacks = tuple(attacks) or default_attacks(norm, tuple(ev.attacks))
    merged = {k: {**ev.attack_options.get(k, {}), **options.get(k, {})}
              for k in attacks if k in ev.attack_options or k in options}
    switches, _ = resolve_switches(norm, {"audit": None if ev.audit else False})
    return attacks, merged, switches


def _threat_model_jobs(ev, ds, run_dir: Path) -> list[EvalJob]:
    """The run's evaluations at the dataset's further threat models (`ThreatModelPlan`):
    the EvalPlan's sizes, the threat model's attacks (or its norm's defaults) with the
    EvalPlan's options for them, the curve and the audit where the norm has their attacks."""
    out = []
    taken = [label for label, _ in ds.budgets] + [PATCH_LABEL]
    for tm in ds.threat_models:
        if tm.label in taken:  # one label, one report block: never two threat models in one
            raise ConfigError(f"{ds.dataset} threat_models: label {tm.label!r} is taken (by "
                              f"a budget, the patch study or another threat model); expected "
                              f"a label not in {taken}")
        taken.append(tm.label)
        attacks, options, switches = _at_norm(ev, tm.norm, tm.attacks, tm.attack_options)
        settings = EvalSettings(
            attacks=attacks, eps=float(tm.eps), norm=tm.norm, n=ev.n,
            batch_size=ev.batch_size, seed=0, curve_factors=ev.curve_factors,
            curve_n=ev.curve_n, audit_n=ev.audit_n,
            audit_square_queries=ev.audit_square_queries, attack_options=options,
            label=tm.label, **switches)
        out.append(EvalJob(tm.label, settings, eval_file(run_dir, tm.label, settings)))
    return out


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
