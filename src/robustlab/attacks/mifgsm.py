"""Momentum iterative FGSM (Dong et al., 2018, "Boosting adversarial attacks with momentum").

`g <- mu * g + grad / ||grad||_1` (per sample), then a step of size `step_size` (default
`eps / steps`) along `sign(g)` (Linf) or `g / ||g||_2` (L2), projected onto the eps-ball ∩
[0, 1]. No random start. Returns per sample the first adversarial iterate, else the one with
the highest loss; adversarial samples are frozen. `stop_on_success=False` never freezes: every
sample takes every step and the highest-loss iterate is returned (for transfer, as `pgd`).
"""

from __future__ import annotations

from typing import Any

import torch

from robustlab.attacks.base import Attack, BestIterate
from robustlab.attacks.fgsm import LOSS
from robustlab.attacks.losses import is_adversarial
from robustlab.attacks.norms import eps_view, project_and_clip, steepest_direction
from robustlab.common.options import Option
from robustlab.registry import ATTACKS


@ATTACKS.register("mifgsm")
class MIFGSM(Attack):
    """Momentum iterative FGSM (no random start)."""

    quick_options = {"steps": 5}

    OPTIONS = {
        "steps": Option(10, "int", "iterations", low=1),
        "step_size": Option(None, "float", "absolute step, in the norm's units (null: eps / "
                            "steps per sample)", low=0.0, allow_none=True),
        "decay": Option(1.0, "float", "momentum mu", low=0.0),
        "loss": LOSS,
        "stop_on_success": Option(True, "bool", "freeze a sample at its first adversarial "
                                  "iterate (false: the highest-loss iterate, for transfer)"),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.check_step("step_size")
        self._loss_fn = self.chosen_loss()

    def perturb(self, model, x, y, eps, target, generator):
        loss_fn = self._loss_fn
        e_all = eps_view(eps, x)
        s_all = (
            e_all / self.steps if self.step_size is None else torch.full_like(e_all, self.step_size)
        )
        stop = self.stop_on_success
        best = BestIterate.from_clean(model, x, y, loss_fn, target) if stop else BestIterate(x)
        idx = best.remaining()
        x0, y0, e0, s0 = x[idx], y[idx], e_all[idx], s_all[idx]
        t0 = target[idx] if target is not None else None
        xa, mom = x0, torch.zeros_like(x0)
        for _ in range(self.steps):
            if idx.numel() == 0:
                break
            g = model.gradient(xa, y0, loss_fn, t0)
            success = is_adversarial(g.logits, y0, t0) & stop
            best.update(idx, xa, g.loss, success)
            grad = g.grad
            if bool(success.any()):
                keep = ~success
                idx, xa, grad, mom = idx[keep], xa[keep], grad[keep], mom[keep]
                x0, y0, e0, s0 = x0[keep], y0[keep], e0[keep], s0[keep]
                t0 = t0[keep] if t0 is not None else None
                if idx.numel() == 0:
                    break
            l1 = grad.abs().reshape(grad.shape[0], -1).sum(1).clamp_min(1e-12)
            mom = self.decay * mom + grad / eps_view(l1, grad)
            xa = project_and_clip(x0, xa + s0 * steepest_direction(mom, self.norm), e0, self.norm)
        if idx.numel():
            logits = model.logits(xa)
            best.update(idx, xa, loss_fn(logits, y0, t0), is_adversarial(logits, y0, t0) & stop)
        if not stop:
            best.offer_clean(model, x, y, loss_fn, target)
        return best.x
