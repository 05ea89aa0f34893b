"""`evaluate_model`: every metric of one model under one threat model, as a JSON-ready dict."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.common.inference import predict_logits
from robustlab.common.modes import eval_mode
from robustlab.common.sharding import Shard
from robustlab.evaluation import metrics as M
from robustlab.evaluation.adv_examples import save_adversarial
from robustlab.evaluation.attack_runner import (
    AttackOutcome,
    build_attack,
    build_attacks,
    run_attack,
    summarize_outcome,
)
from robustlab.evaluation.audit import run_audit
from robustlab.evaluation.partial import PartialResults, partial_path, resume_key
from robustlab.evaluation.progress import Progress
from robustlab.evaluation.schema import SCHEMA_VERSION
from robustlab.evaluation.settings import EvalSettings, off_at


@dataclass
class Measured:
    """What `evaluate_model` measured, before it is summarised: the clean predictions and
    confidences `[n]`, each attack's per-sample outcome, the eps curve, the audit and the
    seconds each part took."""

    clean_pred: Tensor
    clean_correct: Tensor
    clean_conf: Tensor
    num_classes: int
    outcomes: dict[str, AttackOutcome]
    curve: list[dict[str, Any]]
    audit: dict[str, Any]
    seconds: dict[str, float]


def evaluate_model(model: nn.Module, x: Tensor, y: Tensor, settings: EvalSettings, *,
                   surrogate: nn.Module | None = None,
                   num_classes: int | None = None, shard: Shard | None = None,
                   progress: bool = False, save_adv: str | Path | None = None,
                   resume: str | Path | None = None) -> dict[str, Any]:
    """Evaluate `model` on the first `settings.n` of `x` `[N, C, H, W]` (in [0, 1]) / `y` `[N]`.

    `surrogate` (optional) is an independently trained model used by the audit's transfer
    attack. Returns the eval dict of schema `SCHEMA_VERSION` (see docs/evaluation.md); the
    caller adds `run` / `training` and writes the file. `shard` (under torchrun): this process
    attacks its share of the batches and gathers the rest; every process returns the full,
    identical result (`robustlab.common.sharding`). `progress`: report each attack, the
    curve and the audit on stderr as they run (`evaluation.progress`). `save_adv`: write each
    attack's adversarial examples there (`evaluation.adv_examples`; check the folder first
    with `check_adv_folder`). `resume`: the eval file the result will be written to; each
    attack's finished batches are kept beside it and a rerun after a kill takes them from
    there (`evaluation.partial`; not with `save_adv` or `shard`; the caller deletes the
    partial file once the eval file is written).
    """
    settings.validate()
    built = build_attacks(settings)
    t_start = time.perf_counter()
    n = min(settings.n or len(x), len(x))
    if n == 0:
        raise ValueError("evaluation: the test split is empty")
    x, y = x[:n], y[:n]
    partial = None
    if resume is not None and save_adv is None and (shard is None or shard.world_size == 1):
        partial = PartialResults(partial_path(resume), resume_key(settings.key(), model, x, y))
        if partial.loaded and progress:
            print(f"  resuming: {partial.loaded} finished batch(es) in {partial.path}",
                  file=sys.stderr, flush=True)
    with eval_mode(model):
        measured = _measure(model, x, y, settings, built, surrogate=surrogate,
                            num_classes=num_classes, shard=shard,
                            progress=Progress(progress and (shard is None or shard.rank == 0)),
                            keep_adv=save_adv is not None, partial=partial)
    if save_adv is not None and (shard is None or shard.rank == 0):
        for name, out in measured.outcomes.items():
            save_adversarial(save_adv, name, out.x_adv, y, out.robust,
                             {"eps": settings.eps, "norm": settings.norm, "n": n,
                              "settings_key": settings.key()})
    return _result(model, y, settings, measured, total_s=time.perf_counter() - t_start)


def _measure(model: nn.Module, x: Tensor, y: Tensor, settings: EvalSettings,
             built: dict[str, Any], *, surrogate: nn.Module | None, num_classes: int | None,
             shard: Shard | None, progress: Progress, keep_adv: bool = False,
             partial: PartialResults | None = None) -> Measured:
    t0 = time.perf_counter()
    logits = predict_logits(model, x, settings.batch_size)
    clean_pred = logits.argmax(1)
    clean_correct = (clean_pred == y).cpu()
    clean_conf = M.confidence(logits).cpu()
    k = num_classes or int(logits.shape[1])
    seconds = {"clean_s": time.perf_counter() - t0}
    outcomes = {}
    for name, attack in built.items():
        with progress.stage(name, len(x)) as update:
            outcomes[name] = run_attack(attack, model, x, y, clean_correct, eps=settings.eps,
                                        norm=settings.norm, batch_size=settings.batch_size,
                                        shard=shard, progress=update, keep_adv=keep_adv,
                                        partial=partial.batches(name) if partial else None)
    t0 = time.perf_counter()
    curve = []
    if settings.curve_attack and settings.curve_factors:
        with progress.stage(f"eps curve ({settings.curve_attack})",
                            min(settings.curve_n or len(x), len(x)), bar=False):
            curve = _curve(model, x, y, clean_correct, settings, outcomes, shard)
    seconds["curve_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    audit: dict[str, Any] = {"flagged": False, "flags": [], "checks": [], "skipped": True}
    if settings.audit:
        with progress.stage("gradient-masking audit",
                            min(settings.audit_n or len(x), len(x)), bar=False):
            audit = run_audit(model, x, y, clean_correct, clean_pred=clean_pred.cpu(),
                              settings=settings, outcomes=outcomes, curve=curve,
                              num_classes=k, surrogate=surrogate, shard=shard)
    seconds["audit_s"] = time.perf_counter() - t0
    return Measured(clean_pred, clean_correct, clean_conf, k, outcomes, curve, audit, seconds)


def _result(model: nn.Module, y: Tensor, settings: EvalSettings, m: Measured, *,
            total_s: float) -> dict[str, Any]:
    """The eval dict (schema `SCHEMA_VERSION`) of what `_measure` measured."""
    clean_acc = M.accuracy(m.clean_correct)
    worst = torch.stack([o.robust for o in m.outcomes.values()]).all(0)
    attacks = {}
    for name, out in m.outcomes.items():
        summary = summarize_outcome(out, m.clean_correct, settings.ece_bins)
        summary["gap"] = clean_acc - summary["acc"]
        attacks[name] = summary
    return {
        "schema": SCHEMA_VERSION,
        "settings": settings.to_dict(),
        "settings_key": settings.key(),
        "model": {"class": type(model).__name__,
                  "nondifferentiable": bool(getattr(model, "nondifferentiable", False)),
                  "randomized": bool(getattr(model, "randomized", False)),
                  "num_classes": m.num_classes},
        "n": len(y),
        "clean": {"acc": clean_acc,
                  "confidence": M.confidence_summary(m.clean_conf, m.clean_correct),
                  "ece": M.expected_calibration_error(m.clean_conf, m.clean_correct,
                                                      settings.ece_bins)},
        "attacks": attacks,
        "worst_case": {"acc": M.accuracy(worst), "gap": clean_acc - M.accuracy(worst),
                       "attacks": list(settings.attacks)},
        "mixed": {"attack": settings.mixed, "acc": attacks[settings.mixed]["mixed_acc"]},
        "curve": {"attack": settings.curve_attack, "norm": settings.norm, "points": m.curve,
                  **_off(settings, "curve", not settings.curve_attack)},
        "audit": {**m.audit, **_off(settings, "audit", not settings.audit)},
        "timing": {"total_s": total_s, "clean_s": m.seconds["clean_s"],
                   "attacks_s": {k: o.seconds for k, o in m.outcomes.items()},
                   "curve_s": m.seconds["curve_s"], "audit_s": m.seconds["audit_s"]},
        "per_sample": {
            "labels": y.cpu().tolist(),
            "correct": {"clean": M.bits(m.clean_correct),
                        **{k: M.bits(o.robust) for k, o in m.outcomes.items()},
                        "worst_case": M.bits(worst)},
            "confidence": {"clean": _rounded(m.clean_conf),
                           **{k: _rounded(o.conf) for k, o in m.outcomes.items()}},
            **_distances(m.outcomes),
            **_queries(m.outcomes),
        },
    }


def _off(settings: EvalSettings, what: str, is_off: bool) -> dict[str, str]:
    """`{"off": "curve: off at l0 (...)"}` when `what` (the curve or the audit) did not run
    because the evaluation's norm has no attack for it (`settings.off_at`); `{}` otherwise,
    so linf / l2 files are unchanged."""
    line = off_at(settings.norm).get(what) if is_off else None
    return {"off": line} if line else {}


def _distances(outcomes: dict[str, AttackOutcome]) -> dict[str, Any]:
    """`{"distances": {attack: {"norm", "values"}}}` for the minimum-norm attacks (fmn,
    ddn): each image's minimal distance in the attack's norm, null where the attack found no
    adversarial point; `{}` when none ran (the field is then absent)."""
    kept = {k: {"norm": o.distance_norm, "values": M.finite_or_none(o.distances)}
            for k, o in outcomes.items() if o.distances is not None}
    return {"distances": kept} if kept else {}


def _queries(outcomes: dict[str, AttackOutcome]) -> dict[str, Any]:
    """`{"queries": {attack: [int]}}` for the query-counting attacks (square, sparse-rs, spsa,
    hop-skip-jump): each image's model queries as the attack counts them (`last_queries`);
    `{}` when none ran (the field is then absent)."""
    kept = {k: o.queries.tolist() for k, o in outcomes.items() if o.queries is not None}
    return {"queries": kept} if kept else {}


def _rounded(values: Tensor) -> list[float]:
    return [round(v, 4) for v in values.tolist()]


def _curve(model: nn.Module, x: Tensor, y: Tensor, clean_correct: Tensor,
           settings: EvalSettings, outcomes: dict[str, AttackOutcome],
           shard: Shard | None) -> list[dict[str, Any]]:
    """Accuracy of `settings.curve_attack` at eps * factor on the first `curve_n` samples."""
    if not settings.curve_attack or not settings.curve_factors:
        return []
    m = min(settings.curve_n or len(x), len(x))
    points = []
    for factor in sorted(set(settings.curve_factors)):
        eps = settings.eps * factor
        if settings.norm == "linf" and eps > 1:
            continue  # beyond the pixel range: the budget 1 point already allows any image
        if factor == 0:
            robust = clean_correct[:m]
        elif factor == 1 and settings.curve_attack in outcomes:
            robust = outcomes[settings.curve_attack].robust[:m]
        else:
            attack = build_attack(settings.curve_attack, eps=eps, norm=settings.norm,
                                  seed=settings.seed, adaptive=settings.adaptive,
                                  options=settings.attack_options.get(settings.curve_attack))
            robust = run_attack(attack, model, x[:m], y[:m], clean_correct[:m], eps=eps,
                                norm=settings.norm, batch_size=settings.batch_size,
                                shard=shard).robust
        points.append({"factor": factor, "eps": eps, "acc": M.accuracy(robust), "n": m})
    return points
