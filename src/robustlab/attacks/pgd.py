"""Projected gradient descent (Madry et al., 2018) in Linf or L2, and CW-Linf (PGD on the
Carlini–Wagner margin loss).

Each restart starts at a uniform random point of the eps-ball (unless `random_start=False`)
and takes `steps` steepest-ascent steps of size `step_size` (`sign(grad)` for Linf, the unit
L2 gradient for L2), projecting onto the eps-ball ∩ [0, 1] after each step. The returned
point is, per sample, the first adversarial iterate found over all restarts, else the iterate
with the highest loss. Samples that are adversarial are frozen (they take no further steps
and no further restarts); random numbers are drawn for the whole batch, so freezing does not
change the other samples' trajectories. The clean input is evaluated last, only for the
samples no iterate broke (it is returned if it is misclassified already or has the highest
loss), so the attack never lowers a sample's loss or turns a misclassified sample correct.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, AttackModel, BestIterate
from robustlab.attacks.fgsm import LOSS
from robustlab.attacks.losses import LossFn, is_adversarial, margin_loss
from robustlab.attacks.norms import (
    eps_view,
    linf_box,
    project_and_clip,
    random_in_ball,
    steepest_direction,
)
from robustlab.common.options import Option
from robustlab.registry import ATTACKS


def pgd_run(
    model: AttackModel,
    x: Tensor,
    y: Tensor,
    eps: Tensor,
    target: Tensor | None,
    generator: torch.Generator,
    *,
    loss_fn: LossFn,
    norm: str,
    steps: int,
    step_size: Tensor,
    restarts: int,
    random_start: bool,
    stop_on_success: bool = True,
) -> Tensor:
    """Core PGD loop (see the module docstring). `eps`, `step_size`: `[N]`. Returns x_adv.

    Per step: one gradient pass (whose logits also decide success and the best iterate),
    then a handful of fused tensor ops; the active set shrinks as samples become adversarial.
    `stop_on_success=False` never freezes: every sample takes every step and the highest-loss
    iterate is returned (what transfer attacks want: points deep past the crafting model's
    boundary rather than just across it).
    """
    best = BestIterate(x)
    eps_v, step_v = eps_view(eps, x), eps_view(step_size, x)
    if norm == "linf":
        lo_all, hi_all = linf_box(x, eps_v)
    for _ in range(restarts):
        # Drawn for the whole batch so freezing never changes the other samples' noise.
        noise = random_in_ball(x, eps_v, norm, generator) if random_start else None
        idx = best.remaining()
        if idx.numel() == 0:
            break
        x0, y0, e0, s0 = x[idx], y[idx], eps_v[idx], step_v[idx]
        t0 = target[idx] if target is not None else None
        if norm == "linf":
            lo, hi = lo_all[idx], hi_all[idx]
            xa = torch.clamp(x0 + noise[idx], lo, hi) if noise is not None else x0
        else:
            xa = project_and_clip(x0, x0 + noise[idx], e0, norm) if noise is not None else x0
        # the best non-adversarial iterate of the active samples, kept locally
        bx, bl = best.x[idx], best.loss[idx]
        for _step in range(steps):
            g = model.gradient(xa, y0, loss_fn, t0)
            success = _success(g.logits, y0, t0, stop_on_success)
            better = g.loss > bl
            bl = torch.where(better, g.loss, bl)
            bx = torch.where(eps_view(better, xa), xa, bx)
            grad = g.grad
            if stop_on_success and bool(success.any()):  # record and freeze them
                best.update(idx[success], xa[success], g.loss[success], success[success])
                keep = ~success
                best.x[idx[keep]] = bx[keep]
                best.loss[idx[keep]] = bl[keep]
                idx, xa, grad, bx, bl = idx[keep], xa[keep], grad[keep], bx[keep], bl[keep]
                x0, y0, e0, s0 = x0[keep], y0[keep], e0[keep], s0[keep]
                t0 = t0[keep] if t0 is not None else None
                if norm == "linf":
                    lo, hi = lo[keep], hi[keep]
                if idx.numel() == 0:
                    break
            if norm == "linf":
                xa = torch.clamp(xa + s0 * grad.sign(), lo, hi)
            else:
                xa = project_and_clip(x0, xa + s0 * steepest_direction(grad, norm), e0, norm)
        else:
            logits = model.logits(xa)  # the last iterate has not been evaluated yet
            loss, success = loss_fn(logits, y0, t0), _success(logits, y0, t0, stop_on_success)
            better = loss > bl
            bl = torch.where(better, loss, bl)
            bx = torch.where(eps_view(better, xa), xa, bx)
            best.x[idx], best.loss[idx] = bx, bl
            best.update(idx[success], xa[success], loss[success], success[success])
    best.offer_clean(model, x, y, loss_fn, target)
    return best.x


def _success(logits: Tensor, y: Tensor, target: Tensor | None, stop: bool) -> Tensor:
    if stop:
        return is_adversarial(logits, y, target)
    return torch.zeros(len(y), dtype=torch.bool, device=logits.device)


@ATTACKS.register("pgd")
class PGD(Attack):
    """PGD with random start and restarts (Madry et al., 2018)."""

    quick_options = {"steps": 5, "restarts": 2}

    OPTIONS = {
        "steps": Option(10, "int", "iterations per restart", low=1),
        "step_size": Option(None, "float", "absolute step, in the norm's units (null: 2.5 eps "
                            "/ steps per sample, Madry et al.)", low=0.0, allow_none=True),
        "restarts": Option(1, "int", "runs from fresh random starts, on the samples still "
                           "robust", low=1),
        "random_start": Option(True, "bool", "start at a uniform random point of the eps-ball "
                               "(false: at the clean input)"),
        "stop_on_success": Option(True, "bool", "freeze a sample at its first adversarial "
                                  "iterate (false: the highest-loss iterate, for transfer)"),
        "loss": LOSS,
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.check_step("step_size")
        self._loss_fn = self.chosen_loss()

    def loss_fn(self) -> LossFn:
        return self._loss_fn

    def perturb(self, model, x, y, eps, target, generator):
        if self.step_size is None:
            step = 2.5 * eps / self.steps
        else:
            step = torch.full_like(eps, self.step_size)
        return pgd_run(
            model,
            x,
            y,
            eps,
            target,
            generator,
            loss_fn=self.loss_fn(),
            norm=self.norm,
            steps=self.steps,
            step_size=step,
            restarts=self.restarts,
            random_start=self.random_start,
            stop_on_success=self.stop_on_success,
        )


@ATTACKS.register("cw-linf")
class CWLinf(PGD):
    """PGD on the Carlini–Wagner margin loss `max_{j != y} z_j - z_y` (capped at `kappa`).

    The options of `pgd` except `loss` (always the margin; use pgd for others), plus `kappa`.
    Default norm is Linf; `norm="l2"` gives CW-L2-style PGD.
    """

    quick_options = {"steps": 5}

    fixed_options = {"loss": "margin"}
    OPTIONS = {"kappa": Option(math.inf, "float", "cap of the margin (confidence; inf: "
                               "uncapped)", low=0.0, low_open=True, allow_inf=True)}

    def loss_fn(self) -> LossFn:
        if self.kappa == float("inf"):
            return margin_loss
        return functools.partial(margin_loss, kappa=self.kappa)
