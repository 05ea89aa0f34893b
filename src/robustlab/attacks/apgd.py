"""Auto-PGD (Croce & Hein, 2020, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks"): APGD-CE, APGD-DLR and targeted APGD-T.

One run of `steps` iterations, per sample:
- start at `x0 = x + eps * t / ||t||` (t uniform in [-1, 1]^d for Linf, Gaussian for L2),
  clipped to [0, 1]; step size `eta = 2 * eps`;
- the first step is a projected steepest-ascent step; later steps add momentum:
  `z = P(x_k + eta * dir(grad))`, `x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))`
  with `a = 0.75` (`momentum`);
- at the checkpoints `w_0 = 0, w_1 = ceil(0.22 N), ...` (gaps shrinking by 0.03 N down to
  0.06 N) the step size is halved, and the iterate reset to the highest-loss point so far,
  when (1) the loss increased in at most `rho = 0.75` of the steps since the last checkpoint,
  or (2) the step size was not halved at the last checkpoint and the best loss has not
  improved since.
Restarts (`restarts`) run again on the samples still robust. APGD-T runs one such attack per
target class, the classes with the 2nd..(n_target_classes+1)-th highest clean logits, with
the targeted DLR loss, again only on the samples still robust.

At `norm="l1"` (Croce & Hein 2021, "Mind the box"; the original AutoAttack's APGD-L1): the
start is `x + t` (t Gaussian) projected onto the L1 ball ∩ [0, 1]^d (`attacks/l1.py`); each
step is `x_{k+1} = P(x_k + eta * d_k)` with `d_k` the signs of the `topk` fraction of the
largest gradient coordinates scaled to unit L1 norm (no momentum); `eta` starts at eps; every
`max(int(0.04 N), 1)` iterations, with `s` the number of coordinates the best point changes:
`topk = s / d / 1.5`; where `s` fell below 0.95 of its last value the step returns to eps and
the iterate to the best point, elsewhere the step is divided by 1.5 (never below eps / 10).
`topk` starts at 0.2 (or at the start's sparsity / 1.5 when the run starts from a given point).
With `large_eps` (the standard L1 AutoAttack's `use_largereps`) each run is three stages of
ceil(0.3 N), ceil(0.3 N) and the remaining iterations at 3 eps, 2 eps and eps, each starting
from the previous stage's highest-loss point projected onto its ball; only the last stage's
points (inside the eps ball) can be returned.

Samples found adversarial are frozen (per-sample state is independent, so the others'
trajectories are unchanged); the output is the first adversarial iterate, else the iterate
with the highest loss.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, AttackError, AttackModel, BestIterate
from robustlab.attacks.l1 import l0_count, l1_sparse_direction, project_l1_box
from robustlab.attacks.losses import LossFn, ce_loss, dlr_loss, is_adversarial
from robustlab.attacks.norms import (
    eps_view,
    layout_of,
    lp_norm,
    project_and_clip,
    steepest_direction,
)
from robustlab.attacks.progress import step_reporter
from robustlab.common.options import Option
from robustlab.common.vocabulary import ATTACK_NORMS
from robustlab.registry import ATTACKS


def apgd_checkpoint_gaps(steps: int) -> tuple[int, int, int]:
    """(first gap, gap decrement, minimal gap) of the checkpoint schedule, in iterations."""
    return max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)


def apgd_start(x: Tensor, eps_v: Tensor, norm: str, generator: torch.Generator) -> Tensor:
    """The APGD random start `x + eps * t / ||t||`, clipped to [0, 1]."""
    if norm == "linf":
        t = 2 * torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 1
    else:
        t = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    t = t / eps_view(lp_norm(t, norm), t).clamp_min(1e-12)
    return (x + eps_v * t.contiguous(memory_format=layout_of(x))).clamp(0.0, 1.0)


def apgd_run(
    model: AttackModel,
    x: Tensor,
    y: Tensor,
    eps: Tensor,
    target: Tensor | None,
    generator: torch.Generator,
    best: BestIterate,
    idx: Tensor,
    *,
    loss_fn: LossFn,
    norm: str,
    steps: int,
    momentum: float = 0.75,
    rho: float = 0.75,
    success_is_targeted: bool = True,
) -> None:
    """One APGD run on the rows `idx` of the full batch (`x`, `y`, `eps` `[N]`, `target`);
    offers every iterate to `best`. Random numbers are drawn for the full batch.

    With a `target`, the loss is targeted; success means "classified as target" unless
    `success_is_targeted=False` (APGD-T: any misclassification counts, as in AutoAttack)."""
    x_start_all = apgd_start(x, eps_view(eps, x), norm, generator)
    if idx.numel() == 0:
        return
    x0 = x[idx]
    e0 = eps_view(eps[idx], x0)
    y0 = y[idx]
    t0 = target[idx] if target is not None else None
    xa = x_start_all[idx]
    g = model.gradient(xa, y0, loss_fn, t0)
    success = is_adversarial(g.logits, y0, t0 if success_is_targeted else None)
    best.update(idx, xa, g.loss, success)
    grad = g.grad
    st = {
        "idx": idx,
        "x0": x0,
        "e0": e0,
        "y0": y0,
        "xa": xa,
        "grad": grad,
        "x_prev": xa,
        "step": 2 * e0,
        "x_max": xa,
        "grad_max": grad,
        "loss_max": g.loss,
        "loss_prev": g.loss,
        "n_incr": torch.zeros_like(g.loss),
        "loss_max_last": g.loss,
        "reduced_last": torch.ones_like(success),
    }
    if t0 is not None:
        st["t0"] = t0
    st = _keep(st, ~success)
    gap, decr, gap_min = apgd_checkpoint_gaps(steps)
    counter = 0
    for i in range(steps):
        if st["idx"].numel() == 0:
            return
        a = 1.0 if i == 0 else momentum
        xa, x0, e0 = st["xa"], st["x0"], st["e0"]
        z = project_and_clip(x0, xa + st["step"] * steepest_direction(st["grad"], norm), e0, norm)
        x_new = project_and_clip(x0, xa + a * (z - xa) + (1 - a) * (xa - st["x_prev"]), e0, norm)
        st["x_prev"], st["xa"] = xa, x_new
        t0 = st.get("t0")
        g = model.gradient(x_new, st["y0"], loss_fn, t0)
        success = is_adversarial(g.logits, st["y0"], t0 if success_is_targeted else None)
        best.update(st["idx"], x_new, g.loss, success)
        loss = g.loss
        st["grad"] = g.grad
        st["n_incr"] = st["n_incr"] + (loss > st["loss_prev"]).to(loss.dtype)
        st["loss_prev"] = loss
        improved = loss > st["loss_max"]
        imp_v = eps_view(improved, x_new)
        st["x_max"] = torch.where(imp_v, x_new, st["x_max"])
        st["grad_max"] = torch.where(imp_v, g.grad, st["grad_max"])
        st["loss_max"] = torch.where(improved, loss, st["loss_max"])
        counter += 1
        if counter == gap:
            oscillating = st["n_incr"] <= gap * rho
            stalled = ~st["reduced_last"] & (st["loss_max_last"] >= st["loss_max"])
            reduce = oscillating | stalled
            st["reduced_last"] = reduce
            st["loss_max_last"] = st["loss_max"]
            red_v = eps_view(reduce, x_new)
            st["step"] = torch.where(red_v, st["step"] / 2, st["step"])
            st["xa"] = torch.where(red_v, st["x_max"], st["xa"])
            st["grad"] = torch.where(red_v, st["grad_max"], st["grad"])
            st["n_incr"] = torch.zeros_like(st["n_incr"])
            counter = 0
            gap = max(gap - decr, gap_min)
        if bool(success.any()):
            st = _keep(st, ~success)


# APGD-L1's constants (Croce & Hein 2021; the original AutoAttack's `attack_single_run` at L1)
L1_STAGES = ((3.0, 0.3), (2.0, 0.3))  # large_eps: (eps factor, fraction of steps), then eps
L1_TOPK_START = 0.2  # fraction of coordinates of the first steps
L1_SPARSITY_DROP = 0.95  # the best point got sparser: reset the step and the iterate
L1_STEP_DIVISOR = 1.5  # the step's shrink factor, also topk = sparsity / 1.5
L1_MIN_STEP = 10.0  # the step never goes below eps / 10
L1_CHECK_FRACTION = 0.04  # a checkpoint every max(int(0.04 N), 1) iterations


def apgd_l1_stages(steps: int, large_eps: bool) -> list[tuple[float, int]]:
    """`(eps factor, iterations)` of each stage of one APGD-L1 run: with `large_eps` (and at
    least 3 steps) 3 eps, 2 eps and eps for ceil(0.3 N), ceil(0.3 N) and the rest."""
    if not large_eps or steps < 3:
        return [(1.0, steps)]
    stages = [(factor, math.ceil(frac * steps)) for factor, frac in L1_STAGES]
    return [*stages, (1.0, steps - sum(n for _, n in stages))]


def apgd_l1_run(
    model: AttackModel,
    x: Tensor,
    y: Tensor,
    eps: Tensor,
    target: Tensor | None,
    generator: torch.Generator,
    best: BestIterate,
    idx: Tensor,
    *,
    loss_fn: LossFn,
    steps: int,
    large_eps: bool,
    success_is_targeted: bool = True,
) -> None:
    """One APGD-L1 run (module docstring) on the rows `idx`; the Gaussian start is drawn for
    the full batch. Only the last stage (radius eps) offers its iterates to `best`."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if idx.numel() == 0:
        return
    x0, y0, e0 = x[idx], y[idx], eps[idx]
    t0 = target[idx] if target is not None else None
    stages = apgd_l1_stages(steps, large_eps)
    xa = x0 + noise[idx]
    for i, (factor, n_steps) in enumerate(stages):
        last = i == len(stages) - 1
        xa = project_l1_box(x0, xa, e0 * factor).contiguous(memory_format=layout_of(x0))
        xa = _l1_stage(
            model, x0, y0, t0, e0 * factor, xa, n_steps, loss_fn=loss_fn,
            given_start=len(stages) > 1, best=best if last else None, idx=idx,
            success_is_targeted=success_is_targeted)


def _l1_stage(model, x0, y0, t0, e0, xa, steps, *, loss_fn, given_start, best, idx,
              success_is_targeted) -> Tensor:
    """`steps` APGD-L1 iterations at radius `e0` `[M]` from `xa`; returns the highest-loss
    points (used as the next stage's start). With `best`, offers every iterate to it and
    freezes the samples found adversarial."""
    g = model.gradient(xa, y0, loss_fn, t0)
    n_fts = x0[0].numel()
    if given_start:
        sparsity = l0_count(xa - x0)
        topk = sparsity / n_fts / L1_STEP_DIVISOR
    else:
        topk = torch.full_like(g.loss, L1_TOPK_START)
        sparsity = torch.full_like(g.loss, float(n_fts))
    st = {"idx": idx, "x0": x0, "y0": y0, "e0": e0, "xa": xa, "grad": g.grad, "x_max": xa,
          "grad_max": g.grad, "loss_max": g.loss, "step": e0.clone(), "topk": topk.to(e0.dtype),
          "sp_old": sparsity.to(e0.dtype)}
    if t0 is not None:
        st["t0"] = t0
    if best is not None:
        success = is_adversarial(g.logits, y0, t0 if success_is_targeted else None)
        best.update(idx, xa, g.loss, success)
        st = _keep(st, ~success)
    every = max(int(L1_CHECK_FRACTION * steps), 1)
    for i in range(steps):
        if st["idx"].numel() == 0:
            break
        move = eps_view(st["step"], st["xa"]) * l1_sparse_direction(st["grad"], st["topk"])
        x_new = project_l1_box(st["x0"], st["xa"] + move, st["e0"])
        x_new = x_new.contiguous(memory_format=layout_of(st["x0"]))
        t = st.get("t0")
        g = model.gradient(x_new, st["y0"], loss_fn, t)
        st["xa"], st["grad"] = x_new, g.grad
        improved = g.loss > st["loss_max"]
        imp_v = eps_view(improved, x_new)
        st["x_max"] = torch.where(imp_v, x_new, st["x_max"])
        st["grad_max"] = torch.where(imp_v, g.grad, st["grad_max"])
        st["loss_max"] = torch.where(improved, g.loss, st["loss_max"])
        if (i + 1) % every == 0:
            l1_checkpoint(st, n_fts)
        if best is not None:
            success = is_adversarial(g.logits, st["y0"], t if success_is_targeted else None)
            best.update(st["idx"], x_new, g.loss, success)
            if bool(success.any()):
                st = _keep(st, ~success)
    return st["x_max"]


def l1_checkpoint(st: dict[str, Tensor], n_fts: int) -> None:
    """APGD-L1's sparsity and step-size adaptation, in place on the run's state."""
    sparsity = l0_count(st["x_max"] - st["x0"])
    sparser = sparsity / st["sp_old"] < L1_SPARSITY_DROP
    st["topk"] = sparsity / n_fts / L1_STEP_DIVISOR
    step = torch.where(sparser, st["e0"], st["step"] / L1_STEP_DIVISOR)
    st["step"] = torch.minimum(torch.maximum(step, st["e0"] / L1_MIN_STEP), st["e0"])
    st["sp_old"] = sparsity
    red_v = eps_view(sparser, st["xa"])
    st["xa"] = torch.where(red_v, st["x_max"], st["xa"])
    st["grad"] = torch.where(red_v, st["grad_max"], st["grad"])


def _keep(st: dict[str, Tensor], keep: Tensor) -> dict[str, Tensor]:
    if bool(keep.all()):
        return st
    return {k: v[keep] for k, v in st.items()}


class _APGDBase(Attack):
    """The options every APGD shares (see the module docstring)."""

    OPTIONS = {
        "norm": Option("linf", "choice", "threat-model norm (case-insensitive; l1: the L1 "
                       "ball ∩ [0, 1]^d, APGD-L1)", choices=(*ATTACK_NORMS, "l1")),
        "steps": Option(100, "int", "iterations per run", low=1),
        "restarts": Option(1, "int", "runs, each on the samples still robust", low=1),
        # the paper's step weight a of the new point: x_{k+1} mixes it with the last move as
        # a (z - x_k) + (1 - a) (x_k - x_{k-1}), a convex combination only for a in [0, 1]
        "momentum": Option(0.75, "float", "weight a of the new point against the last move",
                           low=0.0, high=1.0),
        # the paper's checkpoint threshold: a fraction strictly inside (0, 1) -- at 1 the test
        # always passes, at 0 only when the loss never rose
        "rho": Option(0.75, "float", "halve the step when the loss rose in at most this "
                      "fraction of the steps since the last checkpoint", low=0.0, high=1.0,
                      low_open=True, high_open=True),
        # the standard L1 AutoAttack's `use_largereps` (Croce & Hein 2021)
        "large_eps": Option(False, "bool", "l1 only: each run spends ceil(0.3 N), ceil(0.3 N) "
                            "and the rest of its steps at 3 eps, 2 eps and eps (the standard "
                            "L1 AutoAttack's use_largereps)"),
    }

    def __init__(self, **options) -> None:
        super().__init__(**options)
        if self.large_eps and self.norm != "l1":
            raise AttackError(f"{self.field('large_eps')}: expected false at norm "
                              f"{self.norm} (the large-eps stages are APGD-L1's), got true")

    def _one_run(self, model, x, y, eps, target, generator, best, idx, loss_fn, *,
                 success_is_targeted: bool = True) -> None:
        """One run on the rows `idx`: APGD-L1 at l1 (momentum and rho play no role there),
        else the Linf / L2 APGD."""
        if self.norm == "l1":
            apgd_l1_run(model, x, y, eps, target, generator, best, idx, loss_fn=loss_fn,
                        steps=self.steps, large_eps=self.large_eps,
                        success_is_targeted=success_is_targeted)
            return
        apgd_run(model, x, y, eps, target, generator, best, idx, loss_fn=loss_fn,
                 norm=self.norm, steps=self.steps, momentum=self.momentum, rho=self.rho,
                 success_is_targeted=success_is_targeted)

    def _run(self, model, x, y, eps, target, generator, best, loss_fn) -> None:
        for _ in range(self.restarts):
            self._one_run(model, x, y, eps, target, generator, best, best.remaining(), loss_fn)


@ATTACKS.register("apgd-ce")
class APGDCE(_APGDBase):
    """APGD on the cross-entropy loss (untargeted, or targeted CE when `target` is given)."""

    quick_options = {"steps": 8}


    def perturb(self, model, x, y, eps, target, generator):
        best = BestIterate.from_clean(model, x, y, ce_loss, target)
        self._run(model, x, y, eps, target, generator, best, ce_loss)
        return best.x


@ATTACKS.register("apgd-dlr")
class APGDDLR(_APGDBase):
    """APGD on the DLR loss (needs >= 3 classes)."""

    quick_options = {"steps": 8}

    min_classes = 3

    def perturb(self, model, x, y, eps, target, generator):
        best = BestIterate.from_clean(model, x, y, dlr_loss, target)
        self._run(model, x, y, eps, target, generator, best, dlr_loss)
        return best.x


@ATTACKS.register("apgd-t")
class APGDT(_APGDBase):
    """Targeted APGD with the targeted DLR loss over the top `n_target_classes` (default 9)
    classes other than the predicted one (needs >= 3 classes). Untargeted in its result (any
    misclassification counts); does not take `target`."""

    quick_options = {"steps": 5, "n_target_classes": 3}

    min_classes = 3
    supports_target = False

    OPTIONS = {"n_target_classes": Option(9, "int", "target classes (the most likely "
                                          "after the predicted one, capped at K - 1)", low=1)}

    def perturb(self, model, x, y, eps, target, generator):
        best = BestIterate.from_clean(model, x, y, ce_loss)
        order = model.logits(x).argsort(dim=1)  # ascending
        k = order.shape[1]
        n_targets = min(self.n_target_classes, k - 1)
        reporter = step_reporter(self, n_targets * self.restarts, len(x))  # progress only
        for tc in range(2, n_targets + 2):
            tgt = order[:, -tc]
            for r in range(self.restarts):
                self._one_run(model, x, y, eps, tgt, generator, best, best.remaining(),
                              dlr_loss, success_is_targeted=False)
                if reporter is not None:  # after each target run: the samples left
                    reporter.step((tc - 2) * self.restarts + r + 1,
                                  lambda: best.remaining().numel())
        return best.x
