"""Did the run learn? Per-epoch flags and the run verdict (metrics.jsonl, summary.json).

A model "collapsed" when its validation accuracy, once the budget warm-up is over, stays within
`COLLAPSE_MARGIN` of chance (e.g. below 19 % on 10 classes: the constant classifier of MNIST is
11.35 %); a loss that is NaN or infinite is flagged as such. Methods that watch for catastrophic
overfitting log `catastrophic_overfitting` themselves. The report (reporting/tables.py) shows
such runs apart from the comparison; they are failures to fix, not results.
"""

from __future__ import annotations

import math
from typing import Any

from robustlab.common.vocabulary import FLAG_COLLAPSED, FLAG_NON_FINITE, FLAG_OVERFIT
from robustlab.common.vocabulary import HEALTH_COLLAPSED as COLLAPSED
from robustlab.common.vocabulary import HEALTH_NON_FINITE as NON_FINITE
from robustlab.common.vocabulary import HEALTH_OK as OK
from robustlab.common.vocabulary import HEALTH_OVERFIT as OVERFIT

#: Share of the way from chance (1/K) to perfect accuracy below which a model counts as collapsed.
COLLAPSE_MARGIN = 0.1


def collapse_threshold(num_classes: int) -> float:
    """Validation accuracy at or below which a classifier of `num_classes` classes collapsed."""
    chance = 1.0 / num_classes
    return chance + COLLAPSE_MARGIN * (1.0 - chance)


def epoch_flags(train_loss: float, val_acc: float | None, *, num_classes: int,
                past_warmup: bool) -> dict[str, bool]:
    """`collapsed` (judged only after the warm-up, and only when there is a validation
    accuracy) and `non_finite_loss` for one epoch."""
    collapsed = (past_warmup and val_acc is not None
                 and val_acc <= collapse_threshold(num_classes))
    return {FLAG_COLLAPSED: bool(collapsed), FLAG_NON_FINITE: not math.isfinite(train_loss)}


def run_health(metrics: list[dict[str, Any]]) -> str:
    """The run's verdict from its per-epoch rows: a non-finite loss at any epoch, else the LAST
    epoch's collapse or catastrophic-overfitting flag (a model that recovered is fine), else ok."""
    if any(m.get(FLAG_NON_FINITE) for m in metrics):
        return NON_FINITE
    last = metrics[-1] if metrics else {}
    if last.get(FLAG_COLLAPSED):
        return COLLAPSED
    if last.get(FLAG_OVERFIT):
        return OVERFIT
    return OK
