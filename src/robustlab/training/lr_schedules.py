"""Learning-rate schedules as pure functions of training progress (stateless, so resuming needs
nothing but the step count)."""

from __future__ import annotations

import math


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the base learning rate at `progress` in [0, 1] (fraction of all steps)."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if schedule in ("step", "piecewise"):  # x0.1 at 50% and again at 75% (Madry et al. style)
        return 1.0 if p < 0.5 else 0.1 if p < 0.75 else 0.01
    if schedule == "onecycle":  # linear warm-up to the peak over 30%, then linear decay to 0
        return p / 0.3 if p < 0.3 else max(0.0, (1.0 - p) / 0.7)
    raise ValueError(f"lr_schedule: unknown schedule {schedule!r}")
