"""Per-sample quantities and the summary statistics built from them (pure functions).

Shapes: `logits` `[N, K]`, `y` `[N]` int64, `delta` `[N, C, H, W]` (pixel units of [0, 1]
images); boolean masks are `[N]`. Every summary of an empty set is None (never NaN).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from robustlab.attacks.norms import pixel_changes


def confidence(logits: Tensor) -> Tensor:
    """Max softmax probability per sample `[N]` (the model's confidence in its prediction)."""
    return logits.float().softmax(dim=1).amax(dim=1)


def expected_calibration_error(conf: Tensor, correct: Tensor, n_bins: int = 15) -> float | None:
    """ECE with `n_bins` equal-width confidence bins: sum_b |B|/N * |acc(B) - conf(B)|, in [0, 1].

    `conf` `[N]` in [0, 1], `correct` bool `[N]`. None for N = 0.
    """
    n = conf.numel()
    if n == 0:
        return None
    conf = conf.double().clamp(0.0, 1.0)
    bins = torch.clamp((conf * n_bins).long(), max=n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            gap = (correct[mask].double().mean() - conf[mask].mean()).abs().item()
            total += mask.sum().item() / n * gap
    return total


def mean_or_none(values: Tensor) -> float | None:
    return values.double().mean().item() if values.numel() else None


def median_or_none(values: Tensor) -> float | None:
    # torch.median returns the lower middle value; use the conventional average of the two.
    if not values.numel():
        return None
    s = values.double().sort().values
    k = s.numel()
    return ((s[(k - 1) // 2] + s[k // 2]) / 2).item()


def lp_norms(delta: Tensor) -> dict[str, Tensor]:
    """Per-sample L2, Linf and L1 norms of `delta` and its L0 size -> {"l2": [N], "linf": [N],
    "l0": [N], "l1": [N]}; l0 counts PIXELS (a pixel of `[N, C, H, W]` changed in any
    channel once)."""
    flat = delta.reshape(delta.shape[0], -1).double()
    return {"l2": flat.norm(p=2, dim=1),
            "linf": flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0]),
            "l0": (pixel_changes(delta) > 0).sum(dim=1).double(),
            "l1": flat.abs().sum(dim=1)}


def within_budget(delta: Tensor, eps: float, norm: str) -> Tensor:
    """Bool `[N]`: the perturbation lies in the threat model's ball (with float tolerance)."""
    size = lp_norms(delta)[norm]
    return size <= eps * (1 + 1e-5) + 1e-6


def finite_or_none(values: Tensor) -> list[float | None]:
    """`values` `[N]` as a JSON list: inf / nan become None (strict JSON has no inf)."""
    return [v if math.isfinite(v) else None for v in values.double().tolist()]


def accuracy_from_distances(distances: Tensor, eps: float) -> float | None:
    """Robust accuracy at `eps` read off minimal distances `[N]` (inf: never fooled; 0: the
    clean input is misclassified): the fraction of images whose distance is beyond `eps`,
    with `within_budget`'s float tolerance, so it counts what a run at `eps` counts."""
    return accuracy(distances.double() > eps * (1 + 1e-5) + 1e-6)


def accuracy(mask: Tensor) -> float | None:
    """Fraction of True in a bool mask (None when empty)."""
    return mask.double().mean().item() if mask.numel() else None


def confidence_summary(conf: Tensor, correct: Tensor) -> dict[str, Any]:
    """Mean confidence overall and split by correct / incorrect prediction."""
    return {"mean": mean_or_none(conf), "correct": mean_or_none(conf[correct]),
            "incorrect": mean_or_none(conf[~correct])}


def mixed_accuracy(clean_correct: Tensor, adv_robust: Tensor) -> float | None:
    """Accuracy on the mixed test set: even indices clean, odd indices adversarial."""
    idx = torch.arange(clean_correct.numel())
    mixed = torch.where(idx % 2 == 0, clean_correct, adv_robust)
    return accuracy(mixed)


def bits(mask: Tensor) -> str:
    """A bool mask `[N]` as a '0'/'1' string (compact, exact per-sample storage in JSON)."""
    return "".join("1" if v else "0" for v in mask.tolist())


def from_bits(text: str) -> Tensor:
    return torch.tensor([c == "1" for c in text], dtype=torch.bool)
