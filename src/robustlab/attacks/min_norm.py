"""Minimum-norm attacks (FMN, DDN): adversarial examples AND each image's minimal distance.

A minimum-norm attack has no fixed budget: it looks, per image, for the adversarial point
closest to the input in its norm (`attack.norm`). `eps` is accepted and ignored (like
`cw-l2`), so one run gives the robust accuracy at every eps: an image is robust at eps when
its distance is larger than eps.

The distances come back from a function of the call, never as state left on the attack::

    result = minimal_distances(attack, model, x, y)   # or attack.run(model, x, y)
    result.x_adv, result.distances                    # [N, ...], [N] (float64)

`distances[i]` is the norm of `x_adv[i] - x[i]` measured on the returned point, where the
model misclassifies it (0 for an input misclassified already), and inf where the attack
found no adversarial point. `attack(model, x, y)` keeps returning `x_adv` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Attack
from robustlab.attacks.losses import is_adversarial
from robustlab.attacks.norms import pixel_changes
from robustlab.common.inference import predict_logits
from robustlab.common.vocabulary import NORMS

#: The norms a distance can be measured in (l0: the number of changed pixels).
DISTANCE_NORMS = tuple(sorted(NORMS))  # ("l0", "l1", "l2", "linf")


def distance(delta: Tensor, norm: str) -> Tensor:
    """Per-sample `norm` of `delta` `[N, ...]` -> `[N]` in float64 (l0: the number of pixels
    changed in any channel, `norms.pixel_changes`, as the l0 threat model counts them)."""
    flat = delta.reshape(delta.shape[0], -1).double()
    if norm == "l0":
        return (pixel_changes(delta) > 0).sum(1).double()
    if norm == "l1":
        return flat.abs().sum(1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    raise ValueError(f"norm: unknown distance norm {norm!r}; expected one of "
                     f"{', '.join(DISTANCE_NORMS)}")


def fooled_distances(x: Tensor, x_adv: Tensor, fooled: Tensor, norm: str) -> Tensor:
    """`[N]` float64: the `norm` of `x_adv - x` where `fooled` (bool `[N]`), inf elsewhere."""
    d = distance(x_adv - x, norm)
    return torch.where(fooled.to(d.device), d, torch.full_like(d, float("inf")))


@dataclass(frozen=True)
class MinNormResult:
    """What a minimum-norm attack returns: `x_adv` `[N, ...]`, `distances` `[N]` float64 (in
    `norm`; inf where no adversarial point was found) and `norm`."""

    x_adv: Tensor
    distances: Tensor
    norm: str

    def robust_at(self, eps: float) -> Tensor:
        """Bool `[N]`: no adversarial point within `eps` (the distance is larger)."""
        return self.distances > eps


def minimal_distances(attack: Attack, model: nn.Module, x: Tensor, y: Tensor,
                      target: Tensor | None = None) -> MinNormResult:
    """Run `attack` and measure each returned point: one forward pass on `x_adv` says which
    points are adversarial (`target`: which reach it); their norm `attack.norm` is the
    distance, inf elsewhere."""
    x_adv = attack(model, x, y, target)
    logits = predict_logits(model, x_adv, max(len(x_adv), 1))
    labels = y.long().to(logits.device)
    tgt = None if target is None else target.long().to(logits.device)
    fooled = is_adversarial(logits, labels, tgt)
    return MinNormResult(x_adv, fooled_distances(x, x_adv, fooled, attack.norm), attack.norm)


class MinNormAttack(Attack):
    """Base of the minimum-norm attacks: unbounded (`eps` is accepted and ignored) and
    `run(model, x, y)` -> `MinNormResult`. The evaluation keeps their distances
    (`evaluation/attack_runner.py`, through `returns_distances`)."""

    bounded = False
    needs_eps = False
    returns_distances: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.eps = None  # unbounded: the threat-model radius plays no role

    def run(self, model: nn.Module, x: Tensor, y: Tensor,
            target: Tensor | None = None) -> MinNormResult:
        """Adversarial examples and their distances (see `minimal_distances`)."""
        return minimal_distances(self, model, x, y, target)
