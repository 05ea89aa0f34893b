"""Fast gradient sign method (Goodfellow et al., 2015) and FGSM with random start (Wong et al.,
2020, "Fast is better than free").

`fgsm`: one step of size eps along the steepest-ascent direction of the loss at `x` (`sign` for
Linf, the unit gradient for L2). `fgsm-rs`: start at a uniform random point of the eps-ball,
take one step of size `step_size` (default `1.25 * eps`), project onto the ball ∩ [0, 1].
Both keep a sample's clean input when that input is adversarial already (its gradient pass
shows it), so the output's accuracy is never above the clean accuracy.
"""

from __future__ import annotations

from typing import Any

import torch

from robustlab.attacks.base import Attack
from robustlab.attacks.losses import LOSSES, is_adversarial
from robustlab.attacks.norms import (
    eps_view,
    linf_box,
    project_and_clip,
    random_in_ball,
    steepest_direction,
)
from robustlab.common.options import Option
from robustlab.registry import ATTACKS

LOSS = Option("ce", "choice", "loss maximised (dlr needs >= 3 classes)", choices=tuple(LOSSES))


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """Single-step attack: one step of size eps along the loss's steepest-ascent direction."""

    OPTIONS = {"loss": LOSS}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._loss_fn = self.chosen_loss()

    def perturb(self, model, x, y, eps, target, generator):
        e = eps_view(eps, x)
        g = model.gradient(x, y, self._loss_fn, target)
        if self.norm == "linf":
            x_adv = torch.clamp(x + e * g.grad.sign(), *linf_box(x, e))
        else:
            x_adv = project_and_clip(x, x + e * steepest_direction(g.grad, "l2"), e, "l2")
        already = is_adversarial(g.logits, y, target)
        return torch.where(eps_view(already, x), x, x_adv)


@ATTACKS.register("fgsm-rs")
class FGSMRandomStart(Attack):
    """FGSM from a uniform random start in the eps-ball, one step of `step_size`."""

    OPTIONS = {
        "step_size": Option(None, "float", "absolute step, in the norm's units (null: 1.25 eps "
                            "per sample)", low=0.0, allow_none=True),
        "loss": LOSS,
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.check_step("step_size")
        self._loss_fn = self.chosen_loss()

    def perturb(self, model, x, y, eps, target, generator):
        e = eps_view(eps, x)
        step = 1.25 * e if self.step_size is None else torch.full_like(e, self.step_size)
        clean_adv = model.is_adversarial(x, y, target)
        x0 = project_and_clip(x, x + random_in_ball(x, e, self.norm, generator), e, self.norm)
        g = model.gradient(x0, y, self._loss_fn, target)
        x_adv = project_and_clip(x, x0 + step * steepest_direction(g.grad, self.norm), e, self.norm)
        return torch.where(eps_view(clean_adv, x), x, x_adv)
