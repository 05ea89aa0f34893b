"""Perturbation-budget schedules: eps_0 = start_frac * eps rising to eps over a ramp, then held.

`ramp_fraction(progress, ramp_epochs)` maps training progress (in epochs; whole epochs for
per-epoch schedules, fractional ones for per-step schedules) to r in [0, 1]; `scheduled_eps`
maps r to a budget. `constant` is eps throughout (no ramp). `adaptive` is state-driven (the
paper's "iterative refinement"): see `AdaptiveEps`. `EpsWarmup` is the per-step ramp that
every adversarial method applies when `TrainConfig.eps_warmup` > 0 (the hybrid's own ramp
defaults to the same length).
"""

from __future__ import annotations

import math

SCHEDULES: tuple[str, ...] = ("linear", "cosine", "step", "exponential", "adaptive", "constant")


def ramp_fraction(progress: float, ramp_epochs: float) -> float:
    """Fraction of the ramp done after `progress` epochs: `min(1, progress / ramp_epochs)`."""
    return min(1.0, max(0.0, progress / ramp_epochs))


def scheduled_eps(kind: str, eps: float, eps0: float, r: float, levels: int = 4) -> float:
    """Budget at ramp fraction `r` in [0, 1] (r = 0 -> eps0, r = 1 -> eps).

    linear: straight line; cosine: half-cosine ease-in-out; step: `levels` equal stairs from
    eps0 up to eps (the top stair reached at r = 1); exponential: geometric growth
    eps0 * (eps / eps0) ** r; constant: eps throughout.
    """
    if kind == "constant" or r >= 1.0:
        return eps
    if kind == "linear":
        return eps0 + (eps - eps0) * r
    if kind == "cosine":
        return eps0 + (eps - eps0) * 0.5 * (1.0 - math.cos(math.pi * r))
    if kind == "step":
        return eps0 + (eps - eps0) * math.floor(r * levels) / levels
    if kind == "exponential":
        return eps0 * (eps / eps0) ** r if eps0 > 0 else eps * r
    raise ValueError(f"schedule: {kind!r} has no closed form; expected one of "
                     f"{', '.join(s for s in SCHEDULES if s != 'adaptive')}")


class AdaptiveEps:
    """Iterative refinement of the budget: start at eps0; after each epoch, if the validation
    adversarial accuracy AT THE CURRENT eps_t is >= `threshold`, grow eps_t by `factor`
    (never beyond eps); otherwise hold it."""

    def __init__(self, eps: float, eps0: float, factor: float, threshold: float) -> None:
        self.eps, self.factor, self.threshold = eps, factor, threshold
        self.value = eps0

    def update(self, val_adv_acc_at_eps_t: float) -> bool:
        """Apply one refinement step; returns whether eps_t grew."""
        if val_adv_acc_at_eps_t >= self.threshold and self.value < self.eps:
            self.value = min(self.eps, self.value * self.factor)
            return True
        return False


class EpsWarmup:
    """The budget warm-up shared by every adversarial method: eps_t rises from
    `start_frac * eps` to `eps` over the first `epochs` epochs of training (fractional epochs,
    so the budget changes at every step), by `scheduled_eps(kind, ...)`, then stays at eps.
    `epochs = 0` means no warm-up (eps from the first step)."""

    def __init__(self, eps: float, epochs: float, start_frac: float, kind: str = "linear"
                 ) -> None:
        self.eps, self.epochs, self.kind = eps, float(epochs), kind
        self.eps0 = start_frac * eps

    def eps_at(self, progress: float) -> float:
        """Budget after `progress` epochs of training (pixel units)."""
        if self.epochs <= 0:
            return self.eps
        return scheduled_eps(self.kind, self.eps, self.eps0,
                             ramp_fraction(progress, self.epochs))

    def done(self, progress: float) -> bool:
        """Whether training at `progress` epochs runs at the full budget."""
        return self.epochs <= 0 or progress >= self.epochs
