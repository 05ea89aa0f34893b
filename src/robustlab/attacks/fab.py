"""FAB, the Fast Adaptive Boundary attack (Croce & Hein, ICML 2020): `fab` and `fab-t`.

FAB looks for the adversarial example of minimal norm. At every iteration it linearises the
decision boundary at the current iterate `x1` (one hyperplane per competing class, from the
logit differences and their input gradients), picks the closest hyperplane, and projects both
`x1` and the original point `x0` onto it (inside the box [0, 1]). The next iterate is a convex
combination of the two projections, biased towards `x0` (weight `alpha <= alpha_max`) and
overshooting by `eta`; after each success it steps back towards `x0` by the factor `beta`.

`fab` is untargeted (all K - 1 hyperplanes at every step; the Jacobian of the K - 1 logit
differences comes from one batched backward over a replicated batch). `fab-t` is the targeted
version used by AutoAttack: one run per target class -- the classes with the 2nd, 3rd, ...
`(n_target_classes + 1)`-th largest clean logit -- each needing one backward per step for the
single difference `z_t - z_y`; it succeeds on any misclassification.

Norms linf, l2 and l1 (Croce & Hein 2020 define FAB for all three; the original AutoAttack's
L1 version runs FAB-T at L1). At l1 the closest boundary is the one of smallest
`|f| / ||grad f||_inf` (the dual norm), the projection onto a hyperplane inside the box fills
the coordinates in decreasing `|w_i|` order (`l1_boundary_step`), and a restart starts from a
Gaussian direction at the L1 radius; the step rule (alpha, eta, beta) is the same.

Both return, per sample, the smallest adversarial perturbation found if its norm is within
eps, else the input (AutoAttack semantics: a perturbation larger than eps does not count).
Inputs already misclassified are returned unchanged. Runs after the first (restarts) start
from a random point at half the smaller of eps and the best norm so far, and only attack the
samples without a success within eps yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, AttackModel
from robustlab.attacks.losses import is_adversarial, margin_loss
from robustlab.attacks.norms import eps_view, lp_norm, random_in_ball
from robustlab.attacks.progress import step_reporter
from robustlab.common.options import Option
from robustlab.common.vocabulary import ATTACK_NORMS
from robustlab.registry import ATTACKS

_TINY = 1e-12


def _logit_difference(logits: Tensor, y: Tensor, other: Tensor | None) -> Tensor:
    """`z_other - z_y` per row `[N]` (the FAB boundary function; negative before crossing)."""
    assert other is not None
    return logits.gather(1, other[:, None])[:, 0] - logits.gather(1, y[:, None])[:, 0]


def dual_norm(v: Tensor, norm: str) -> Tensor:
    """Dual norm over the last dimension: L1 for linf, L2 for l2, Linf for l1."""
    if norm == "l1":
        return v.abs().amax(-1)
    return v.abs().sum(-1) if norm == "linf" else v.norm(p=2, dim=-1)


def boundary_step(x: Tensor, w: Tensor, c: Tensor, norm: str) -> Tensor:
    """Minimal-norm step onto a hyperplane inside the box: argmin ||d|| s.t. c + w.d = 0 and
    x + d in [0, 1]^D.

    Shapes: `x`, `w` `[N, D]` (flattened points in [0, 1] and hyperplane normals), `c` `[N]`
    (the affine function's value at `x`). Returns `d` `[N, D]`.

    The KKT conditions give `|d_i| = min(lam * a_i, room_i)` in the direction of
    `sign(w_i) * sign(-c)`, with `a_i = 1` (linf) or `|w_i|` (l2) and `room_i` the distance
    from `x_i` to the box face in that direction; the reached value `sum_i |w_i| |d_i|` is a
    piecewise-linear increasing function of `lam` whose kinks are at `room_i / a_i`, so `lam`
    follows from one sort and cumulative sums. Where no point of the box reaches the
    hyperplane, the step to the box corner nearest to it is returned: every coordinate with
    `w_i != 0` moved to its face in that direction (what the authors' projections do; the
    unconstrained step, clipped, left robustlab's L2 FAB-T 15 points weaker than theirs on a
    Linf-trained CNN: docs/attacks.md).
    """
    r = -c
    sgn = torch.where(r < 0, -1.0, 1.0).to(w.dtype)
    ws = w * sgn[:, None]  # now we need ws . d = |r| with d_i moving along sign(ws_i)
    need = r.abs()[:, None]
    aw = ws.abs()
    active = aw > 0
    room = torch.where(ws > 0, 1.0 - x, x).clamp_min(0.0) * active
    a = active.to(w.dtype) if norm == "linf" else aw
    kink = torch.where(active, room / a.clamp_min(1e-30), torch.full_like(room, torch.inf))
    kink_sorted, order = kink.sort(dim=1)
    aw_s, a_s, room_s = aw.gather(1, order), a.gather(1, order), room.gather(1, order)
    saturated = torch.cumsum(aw_s * room_s, dim=1)  # value from coordinates 0..k at their face
    slope = aw_s * a_s
    slope_cum = torch.cumsum(slope, dim=1)
    slope_total = slope_cum[:, -1:]
    finite = torch.isfinite(kink_sorted)
    value_at_kink = saturated + (slope_total - slope_cum) * torch.where(finite, kink_sorted, 0.0)
    value_at_kink = torch.where(finite, value_at_kink, torch.inf)
    k = (value_at_kink < need).sum(dim=1, keepdim=True)  # coordinates saturated at the optimum
    prev = (k - 1).clamp_min(0)
    sat_before = torch.where(k > 0, saturated.gather(1, prev), 0.0)
    slope_after = slope_total - torch.where(k > 0, slope_cum.gather(1, prev), 0.0)
    lam = (need - sat_before) / slope_after.clamp_min(1e-30)
    d_box = torch.minimum(lam * a, room) * torch.sign(ws)
    feasible = saturated[:, -1:] >= need
    return torch.where(feasible, d_box, room * torch.sign(ws))


def l1_boundary_step(x: Tensor, w: Tensor, c: Tensor) -> Tensor:
    """`boundary_step` at l1: argmin ||d||_1 s.t. c + w.d = 0 and x + d in [0, 1]^D.

    A fractional knapsack: a unit of L1 spent on coordinate i buys `|w_i|` of the needed
    `|c|`, up to `room_i` (the distance to the box face towards the hyperplane). So the
    coordinates are filled in decreasing `|w_i|` order, each moved to its face, until the
    next one's partial move closes the gap (Croce & Hein 2020, the original's
    `projection_l1`: the same greedy order, written here from that argument). Where the
    box cannot reach the hyperplane, the box corner nearest to it, as `boundary_step`.
    Shapes as `boundary_step`.
    """
    sgn = torch.where(c > 0, -1.0, 1.0).to(w.dtype)
    ws = w * sgn[:, None]  # ws . d = |c|, each d_i moving along sign(ws_i)
    need = c.abs()[:, None]
    aw = ws.abs()
    room = torch.where(ws > 0, 1.0 - x, x).clamp_min(0.0) * (aw > 0)
    order = aw.argsort(dim=1, descending=True)
    aw_s, room_s = aw.gather(1, order), room.gather(1, order)
    reached = torch.cumsum(aw_s * room_s, dim=1)  # after filling coordinates 0..k
    k = (reached < need).sum(dim=1, keepdim=True)  # coordinates filled to their face
    last = k.clamp_max(x.shape[1] - 1)
    before = torch.where(k > 0, reached.gather(1, (k - 1).clamp_min(0)), 0.0)
    part = ((need - before) / aw_s.gather(1, last).clamp_min(1e-30)).minimum(
        room_s.gather(1, last))
    pos = torch.arange(x.shape[1], device=x.device)[None, :]
    mag_s = torch.where(pos < k, room_s, torch.where(pos == k, part, 0.0))
    mag = torch.empty_like(mag_s).scatter_(1, order, mag_s)
    feasible = reached[:, -1:] >= need
    return torch.where(feasible, mag, room) * torch.sign(ws)


def _step_to_boundary(x: Tensor, w: Tensor, c: Tensor, norm: str) -> Tensor:
    """The minimal-`norm` step onto the hyperplane inside the box (l1 or linf / l2)."""
    return l1_boundary_step(x, w, c) if norm == "l1" else boundary_step(x, w, c, norm)


def _l1_start(x0: Tensor, radius: Tensor, generator: torch.Generator) -> Tensor:
    """FAB's l1 restart (the original's): a Gaussian direction at L1 norm `radius` `[n]`,
    clipped to [0, 1] (clipping only shortens it)."""
    t = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = t / eps_view(lp_norm(t, "l1"), t).clamp_min(_TINY)
    return (x0 + eps_view(radius, x0) * t).clamp(0.0, 1.0)


class _FABBase(Attack):
    """Shared FAB machinery; see the module docstring. `perturb` picks the runs."""

    min_classes = 2
    supports_target = True

    OPTIONS = {
        "norm": Option("linf", "choice", "threat-model norm (case-insensitive; l1: the L1 "
                       "projection onto the hyperplane ∩ [0, 1]^d)",
                       choices=(*ATTACK_NORMS, "l1")),
        "steps": Option(100, "int", "iterations per run", low=1),
        "restarts": Option(1, "int", "runs (after the first: from a random start, on the "
                           "samples without a success within eps)", low=1),
        "alpha_max": Option(0.1, "float", "largest weight of the step towards the original "
                            "point", low=0.0, high=1.0),
        "eta": Option(1.05, "float", "overshoot of the projection", low=0.0, low_open=True),
        "beta": Option(0.9, "float", "step back towards the original point after a success",
                       low=0.0, high=1.0, low_open=True),
        "grad_batch_size": Option(2048, "int", "rows per backward pass of the replicated "
                                  "Jacobian batch", low=1),
    }

    # ------------------------------------------------------------------ the boundary model
    def _untargeted_linearisation(
        self, model: AttackModel, x1: Tensor, y: Tensor, k: int
    ) -> tuple[Tensor, Tensor]:
        """All K - 1 boundaries at `x1`: `df` `[n, K-1]` (z_j - z_y) and `dg` `[n, K-1, D]`.

        One gradient call on the batch replicated K - 1 times (row (i, j) differentiates
        z_j - z_y of sample i), split into chunks of `grad_batch_size` rows.
        """
        n = x1.shape[0]
        others = torch.arange(k - 1, device=y.device)[None, :].expand(n, -1)
        others = others + (others >= y[:, None]).long()  # the K - 1 classes != y, per sample
        per_chunk = max(1, self.grad_batch_size // (k - 1))
        dfs, dgs = [], []
        for s in range(0, n, per_chunk):
            xs, ys, os_ = x1[s : s + per_chunk], y[s : s + per_chunk], others[s : s + per_chunk]
            m = xs.shape[0]
            x_rep = model.prepare(xs.repeat_interleave(k - 1, dim=0))
            g = model.gradient(
                x_rep, ys.repeat_interleave(k - 1), _logit_difference, os_.reshape(-1)
            )
            dfs.append(g.loss.reshape(m, k - 1))
            dgs.append(g.grad.reshape(m, k - 1, -1))
        return torch.cat(dfs), torch.cat(dgs)

    def _targeted_linearisation(
        self, model: AttackModel, x1: Tensor, y: Tensor, t: Tensor, reach_target: bool
    ) -> tuple[Tensor, Tensor]:
        """One boundary at `x1`: `df` `[n, 1]`, `dg` `[n, 1, D]` (one backward).

        `reach_target=False` (AutoAttack's FAB-T): z_t - z_y. `reach_target=True` (success
        means predicting t): z_t - max_{j != t} z_j, i.e. the boundary between t and its
        strongest competitor at `x1`.
        """
        loss_fn = margin_loss if reach_target else _logit_difference
        g = model.gradient(x1, y, loss_fn, t)
        return g.loss[:, None], g.grad.reshape(x1.shape[0], 1, -1)

    # --------------------------------------------------------------------------- one run
    def _run(
        self,
        model: AttackModel,
        x0: Tensor,
        y: Tensor,
        start_radius: Tensor | None,
        boundary_class: Tensor | None,
        success_target: Tensor | None,
        k: int,
        generator: torch.Generator,
        report: Callable[[int, Tensor], None] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """One FAB run of `steps` steps on `x0` `[n, ...]`; returns (best x, best norm `[n]`),
        the norm being inf where no adversarial point was found. `report(step, best_norm)`
        (optional) hears every step's end (progress).

        `boundary_class`: the class t whose boundary with y is followed (None = all classes);
        `success_target`: success means predicting it, and the boundary followed is then the
        one between t and its strongest competitor (None = any misclassification);
        `start_radius` `[n]`: random start at that radius (None = start at `x0`).
        """
        n = x0.shape[0]
        flat0 = x0.reshape(n, -1)
        best = x0.clone()
        best_norm = torch.full((n,), torch.inf, device=x0.device, dtype=x0.dtype)
        x1 = x0.clone()
        if start_radius is not None and self.norm == "l1":
            x1 = _l1_start(x0, start_radius, generator)
        elif start_radius is not None:
            x1 = x0 + random_in_ball(x0, eps_view(start_radius, x0), self.norm, generator)
            x1 = x1.clamp(0.0, 1.0)
        rows = torch.arange(n, device=x0.device)
        for step in range(self.steps):
            if boundary_class is None:
                df, dg = self._untargeted_linearisation(model, x1, y, k)
            else:
                reach = success_target is not None
                df, dg = self._targeted_linearisation(model, x1, y, boundary_class, reach)
            closest = (df.abs() / (dual_norm(dg, self.norm) + _TINY)).argmin(dim=1)
            w = dg[rows, closest]
            f = df[rows, closest]
            flat1 = x1.reshape(n, -1)
            # Hyperplane {z : f + w.(z - x1) = 0}; its value at x0 is f + w.(x0 - x1).
            d1 = _step_to_boundary(flat1, w, f, self.norm)
            d2 = _step_to_boundary(flat0, w, f + (w * (flat0 - flat1)).sum(1), self.norm)
            a1 = lp_norm(d1, self.norm).clamp_min(1e-8)
            a2 = lp_norm(d2, self.norm).clamp_min(1e-8)
            alpha = (a1 / (a1 + a2)).clamp(0.0, self.alpha_max)[:, None]
            nxt = (flat1 + self.eta * d1) * (1 - alpha) + (flat0 + self.eta * d2) * alpha
            x1 = model.prepare(nxt.clamp(0.0, 1.0).reshape(x0.shape))
            success = is_adversarial(model.logits(x1), y, success_target)
            dist = lp_norm(x1 - x0, self.norm)
            better = success & (dist < best_norm)
            best = torch.where(eps_view(better, x0), x1, best)
            best_norm = torch.where(better, dist, best_norm)
            x1 = torch.where(eps_view(success, x0), x0 + self.beta * (x1 - x0), x1)
            if report is not None:
                report(step + 1, best_norm)
        return best, best_norm

    # ---------------------------------------------------------------------- the schedule
    def _targets(self, logits: Tensor, target: Tensor | None) -> list[tuple[Tensor | None, bool]]:
        """The runs as (boundary class per sample or None, success-means-target flag)."""
        raise NotImplementedError

    def perturb(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        with torch.no_grad():
            logits = model.logits(x)
            k = logits.shape[1]
            out = x.clone()
            adv = is_adversarial(logits, y, target)
            found = adv | (eps <= 0)
            best_norm = torch.full_like(eps, torch.inf)
            runs = self._targets(logits, target)
            reporter = step_reporter(self, len(runs) * self.restarts * self.steps, len(x))
            for r, (boundary, to_target) in enumerate(runs):
                for restart in range(self.restarts):
                    idx = (~found).nonzero()[:, 0]
                    if idx.numel() == 0:
                        return out
                    report = None
                    if reporter is not None:  # robust: not adversarial, minus this run's wins
                        base = int((~adv).sum())
                        offset = (r * self.restarts + restart) * self.steps
                        report = _run_report(reporter, offset, base, eps[idx])
                    radius = None
                    if restart > 0:
                        radius = 0.5 * torch.minimum(best_norm[idx], eps[idx])
                    bx, bn = self._run(
                        model,
                        x[idx],
                        y[idx],
                        radius,
                        None if boundary is None else boundary[idx],
                        target[idx] if to_target and target is not None else None,
                        k,
                        generator,
                        report,
                    )
                    best_norm[idx] = torch.minimum(best_norm[idx], bn)
                    ok = bn <= eps[idx]
                    out[idx[ok]] = bx[ok]
                    found[idx[ok]] = True
                    adv[idx[ok]] = True
            return out


def _run_report(reporter: Any, offset: int, base: int, eps: Tensor
                ) -> Callable[[int, Tensor], None]:
    """A run's `report(step, best_norm)`: the reporter's step `offset + step`, with `base`
    minus the run's samples already adversarial within `eps` robust."""
    return lambda step, norm: reporter.step(offset + step,
                                            lambda: base - int((norm <= eps).sum()))


@ATTACKS.register("fab")
class FAB(_FABBase):
    """Untargeted FAB (`fab`): follows the closest of the K - 1 linearised boundaries.

    With `target` given it follows the boundary between the target class and its strongest
    competitor and succeeds only when the target is predicted.
    """

    quick_options = {"steps": 5}


    def _targets(self, logits: Tensor, target: Tensor | None) -> list[tuple[Tensor | None, bool]]:
        return [(target, True)]


@ATTACKS.register("fab-t")
class FABTargeted(_FABBase):
    """Targeted FAB as in AutoAttack (`fab-t`): one run per target class, the classes with
    the 2nd ... `(n_target_classes + 1)`-th largest clean logit (capped at K - 1 targets),
    each following the single boundary z_t - z_y; any misclassification counts.

    The options of `fab`, plus `n_target_classes`. With `target` given, only that target is
    attacked and success means predicting it.
    """

    quick_options = {"steps": 5, "n_target_classes": 2}

    OPTIONS = {"n_target_classes": Option(9, "int", "target classes (the most likely after "
                                          "the predicted one, capped at K - 1)", low=1)}

    def _targets(self, logits: Tensor, target: Tensor | None) -> list[tuple[Tensor | None, bool]]:
        if target is not None:
            return [(target, True)]
        ranked = logits.argsort(dim=1, descending=True)
        n_t = min(self.n_target_classes, logits.shape[1] - 1)
        return [(ranked[:, j], False) for j in range(1, n_t + 1)]
