"""Catastrophic overfitting read off the test set, for every adversarially trained run.

Training flags it from validation numbers (training/methods/validation.py `OverfitGuard`), but
only for the single-step methods that run the guard, and only with the rule the code had when
the run trained. The report applies the same signature to the evaluation itself: at the run's
own training eps, test FGSM accuracy above test PGD accuracy by more than `OVERFIT_GAP`. A model
that beats the attack it trained on but not a multi-step one has not learned robustness; its
numbers are left out of every comparison like any run that did not learn.

Measured calibration (docs/results/paper-cpu, LeNet-5, 1,000 test images): healthy
adversarially trained models keep the gap at 0.000-0.111 (the largest: fgsm-rs, free-at and
gradient-reg); the FGSM hybrids that overfit show 0.29 (paper-cpu) and 0.41 (quick demo).
"""

from __future__ import annotations

import math
from typing import Any

from robustlab.common.vocabulary import HEALTH_OK, HEALTH_OVERFIT, OVERFIT_GAP


def overfit_note(rec: dict[str, Any]) -> str | None:
    """Why `rec` (an evaluation at its run's training eps) shows catastrophic overfitting, or
    None when it does not (or cannot tell: no training eps, no FGSM or PGD number)."""
    train_eps, fgsm, pgd = rec.get("train_eps"), rec.get("fgsm"), rec.get("pgd")
    if not train_eps or fgsm is None or pgd is None:
        return None
    if (rec.get("_train_norm") or rec.get("norm")) != rec.get("norm"):
        return None  # another threat model than the run trained at: its eps is another unit
    if not math.isclose(rec["eps"], train_eps, rel_tol=1e-6) or fgsm - pgd <= OVERFIT_GAP:
        return None
    return (f"test FGSM {100 * fgsm:.1f} % vs PGD {100 * pgd:.1f} % at eps {rec['eps']:g} "
            f"(gap above {100 * OVERFIT_GAP:.0f} pp)")


def eval_overfit_note(data: dict[str, Any]) -> str | None:
    """`overfit_note` for one evaluation file's contents (the `robustlab.eval` schema), for
    readers that have no report record: the transfer study's choice of models."""
    attacks = data.get("attacks", {})
    return overfit_note({"train_eps": data.get("run", {}).get("eps"),
                         "_train_norm": data.get("run", {}).get("norm"),
                         "norm": data.get("settings", {}).get("norm"),
                         "eps": data.get("settings", {}).get("eps"),
                         "fgsm": attacks.get("fgsm", {}).get("acc"),
                         "pgd": attacks.get("pgd", {}).get("acc")})


def mark_test_overfitting(records: list[dict[str, Any]]) -> None:
    """Set `health` to catastrophic overfitting, with `health_note` saying why, on every record
    of a run that trained without a verdict against it but whose evaluation at its training
    eps shows the FGSM/PGD gap (in place)."""
    notes = {}
    for rec in records:
        note = overfit_note(rec) if rec["health"] == HEALTH_OK else None
        if note:
            notes.setdefault(rec["run_dir"], note)
    for rec in records:
        rec["health_note"] = notes.get(rec["run_dir"])
        if rec["health_note"]:
            rec["health"] = HEALTH_OVERFIT
