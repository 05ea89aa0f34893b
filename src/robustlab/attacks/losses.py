"""Per-sample attack objectives. Every loss here is to be MAXIMISED by the attacker.

Signature of every loss: `loss(logits [N, K], y [N] int64, target [N] int64 | None) -> [N]`.
`y` holds the true labels; `target` the target labels of a targeted attack (None when
untargeted). Targeted losses use `target` and must raise if it is None.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def ce_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Untargeted: cross-entropy of the true class (ascend -> leave `y`). Targeted: minus the
    cross-entropy of the target class (ascend -> approach `target`)."""
    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return -F.cross_entropy(logits, target, reduction="none")


def _other_max(logits: Tensor, label: Tensor) -> Tensor:
    """Largest logit among the classes other than `label` -> `[N]`."""
    masked = logits.scatter(1, label[:, None], float("-inf"))
    return masked.amax(dim=1)


def margin_loss(
    logits: Tensor, y: Tensor, target: Tensor | None = None, kappa: float = float("inf")
) -> Tensor:
    """Carlini–Wagner margin on logits, clipped at `kappa` (the confidence).

    Untargeted: `max_{j != y} z_j - z_y`; targeted: `z_t - max_{j != t} z_j`; each capped at
    `kappa` (positive = adversarial by that margin).
    """
    if target is None:
        m = _other_max(logits, y) - logits.gather(1, y[:, None])[:, 0]
    else:
        m = logits.gather(1, target[:, None])[:, 0] - _other_max(logits, target)
    return m.clamp(max=kappa) if kappa != float("inf") else m


def dlr_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference-of-logits-ratio loss of Croce & Hein (2020); needs at least 3 classes.

    Untargeted: `-(z_y - max_{j != y} z_j) / (z_(1) - z_(3))`; targeted:
    `-(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2)`, with `z_(i)` the i-th largest logit.
    """
    srt = logits.sort(dim=1, descending=True).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    if target is None:
        num = z_y - _other_max(logits, y)
        den = srt[:, 0] - srt[:, 2]
    else:
        num = z_y - logits.gather(1, target[:, None])[:, 0]
        fourth = srt[:, min(3, srt.shape[1] - 1)]  # 3 classes: the 3rd stands in for the 4th
        den = srt[:, 0] - 0.5 * (srt[:, 2] + fourth)
    return -num / (den + 1e-12)


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "margin": margin_loss, "dlr": dlr_loss}


def get_loss(name: str) -> LossFn:
    """The loss called `name` (one of `LOSSES`); ValueError naming the choices otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(
            f"loss: unknown loss {name!r}; expected one of {', '.join(LOSSES)}"
        ) from None


def is_adversarial(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Bool `[N]`: misclassified (untargeted) or classified as `target` (targeted)."""
    pred = logits.argmax(dim=1)
    return pred != y if target is None else pred == target
