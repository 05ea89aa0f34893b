"""HopSkipJumpAttack (Chen, Jordan and Wainwright, IEEE S&P 2020): decision-based, l2 / linf.

Uses only the model's decisions (is `argmax` of the logits still the label?), never a
gradient nor a score. Per image:

1. A starting adversarial point: uniform random images (up to `init_trials`), then a binary
   search on the blend `(1 - a) x + a noise` (to a tolerance of 0.001) for the one nearest x.
2. A binary search to the boundary between x and that point, to the threshold
   `theta = gamma / d^(3/2)` (l2) or `gamma / d^2` (linf; there the search runs on the
   linf radius `a` of the box `[x - a, x + a]` that clips the point, to `min(theta, theta*dist)`).
3. `steps` iterations t = 1, 2, ...: the gradient direction at the boundary point from the
   signs of `min(init_evals * sqrt(t), max_evals)` queries at `point + delta u` (u random
   unit vectors: Gaussian for l2, uniform for linf; `delta` 0.1 at t = 1, then
   `sqrt(d) theta dist` (l2) or `d theta dist` (linf), the previous distance to the
   boundary), baseline-corrected as in the paper; a geometric step search along it
   (l2: the unit direction, linf: its sign) from `dist / sqrt(t)`, halving until the step
   lands on the adversarial side; and the binary search of 2. again.

Every model query counts one per image (the clean check, every random trial, every search
step, every sign query). `max_queries` caps them per image: an image stops when its next
phase would exceed it (a gradient estimate then uses the queries left). With `fixed_eps`
(the default: evaluations are at a budget) an image stops as soon as its adversarial point
lies within eps (success = within eps); otherwise it spends the whole budget shrinking the
distance. After a call, `last_queries` `[N]` holds each image's queries and
`last_distances` `[N]` the distance (in the attack's norm) of its best adversarial point
(0 for images misclassified already, inf where none was found).

Untargeted only. The returned points are projected onto the eps-ball by `Attack.__call__`
(an image whose boundary point stayed outside eps is not adversarial there).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, AttackModel
from robustlab.attacks.norms import eps_view, lp_norm
from robustlab.common.options import Option
from robustlab.common.vocabulary import ATTACK_NORMS
from robustlab.registry import ATTACKS

_ROWS = 4096  # inputs per forward pass of the sign queries
_INIT_TOL = 0.001  # the blend search's tolerance (the authors')
_MAX_HALVINGS = 30  # step-size halvings before an iteration gives up its step


class _Oracle:
    """The model's decisions, counting one query per image per evaluated point."""

    def __init__(self, model: AttackModel, y: Tensor, budget: int) -> None:
        self.model, self.y, self.budget = model, y, budget
        self.queries = torch.zeros(len(y), dtype=torch.long, device=y.device)

    def left(self, idx: Tensor) -> Tensor:
        return self.budget - self.queries[idx]

    def adversarial(self, points: Tensor, owners: Tensor) -> Tensor:
        """Is each row of `points` (of the images `owners`, repeats allowed) misclassified?"""
        out = []
        for i in range(0, len(points), _ROWS):
            logits = self.model.logits(self.model.prepare(points[i : i + _ROWS]))
            out.append(logits.argmax(1) != self.y[owners[i : i + _ROWS]])
        self.queries.index_add_(0, owners, torch.ones_like(owners))
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool, device=points.device)


def _clip_box(x: Tensor, p: Tensor, radius: Tensor) -> Tensor:
    """linf: `p` clipped to the box of half-width `radius` `[n]` around `x`."""
    r = eps_view(radius, x)
    return torch.minimum(torch.maximum(p, x - r), x + r)


def _blend(x: Tensor, p: Tensor, alpha: Tensor) -> Tensor:
    a = eps_view(alpha, x)
    return (1 - a) * x + a * p


@ATTACKS.register("hop-skip-jump")
class HopSkipJump(Attack):
    """HopSkipJumpAttack, l2 or linf (decision-based; see the module docstring)."""

    quick_options = {"max_queries": 200, "steps": 3, "init_evals": 10}

    gradient_based = False
    supports_target = False
    OPTIONS = {
        "norm": Option("linf", "choice", "threat-model norm: l2 or linf (case-insensitive)",
                       choices=ATTACK_NORMS),
        "max_queries": Option(10000, "int", "model queries per image (budget), the clean check "
                              "and the initialisation included", low=1),
        "steps": Option(100, "int", "iterations (gradient estimate, step search, binary "
                        "search)", low=1),
        "init_evals": Option(100, "int", "sign queries of the first gradient estimate; the "
                             "t-th uses init_evals * sqrt(t)", low=1),
        "max_evals": Option(10000, "int", "most sign queries of one gradient estimate", low=1),
        "gamma": Option(1.0, "float", "binary-search threshold theta = gamma / d^1.5 (l2), "
                        "gamma / d^2 (linf)", low=0.0, low_open=True),
        "init_trials": Option(100, "int", "random uniform images tried for the starting "
                              "adversarial point", low=1),
        "fixed_eps": Option(True, "bool", "stop an image once its adversarial point is within "
                            "eps (false: spend the budget shrinking the distance)"),
    }

    #: after a call: the queries `[N]` each sample used and its final distances `[N]`
    last_queries: Tensor | None = None
    last_distances: Tensor | None = None

    def _dist(self, p: Tensor, x: Tensor) -> Tensor:
        return lp_norm(p - x, self.norm)

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
            oracle = _Oracle(model, y, self.max_queries)
            everyone = torch.arange(len(x), device=x.device)
            clean_adv = oracle.adversarial(x, everyone)
            best = x.clone()
            dist = torch.full((len(x),), math.inf, device=x.device, dtype=x.dtype)
            dist[clean_adv] = 0.0
            todo = everyone[~clean_adv & ((eps > 0) | (not self.fixed_eps))]
            if todo.numel():
                self._attack(oracle, x, eps, todo, best, dist, generator)
            self.last_queries, self.last_distances = oracle.queries, dist
            return best

    # ------------------------------------------------------------------------- phases
    def _attack(self, oracle: _Oracle, x: Tensor, eps: Tensor, idx: Tensor, best: Tensor,
                dist: Tensor, generator: torch.Generator) -> None:
        """Run the attack on the images `idx`, writing their best points and distances."""
        d = x[0].numel()
        theta = self.gamma / (d ** 1.5 if self.norm == "l2" else d ** 2)
        found, start = self._initial_points(oracle, x, idx, generator)
        idx, cur = idx[found], start[found]
        if idx.numel() == 0:
            return
        cur, bdist = self._boundary(oracle, x[idx], cur, idx, theta)
        self._keep(x, idx, cur, best, dist)
        for t in range(1, self.steps + 1):
            go = self._active(oracle, idx, dist, eps)
            if not bool(go.any()):
                break
            idx, cur, bdist = idx[go], cur[go], bdist[go]
            xs = x[idx]
            delta = (torch.full_like(bdist, 0.1) if t == 1 else
                     bdist * theta * (math.sqrt(d) if self.norm == "l2" else d))
            n_evals = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            grad = self._direction(oracle, cur, idx, delta, n_evals, generator)
            update = grad if self.norm == "l2" else grad.sign()
            cur = self._step(oracle, cur, idx, update, self._dist(cur, xs) / math.sqrt(t))
            cur, bdist = self._boundary(oracle, xs, cur, idx, theta)
            self._keep(x, idx, cur, best, dist)

    def _active(self, oracle: _Oracle, idx: Tensor, dist: Tensor, eps: Tensor) -> Tensor:
        """The images of `idx` that go on: budget left and (fixed eps) not yet within eps."""
        go = oracle.left(idx) > 1
        if self.fixed_eps:
            go &= dist[idx] > eps[idx]
        return go

    def _keep(self, x: Tensor, idx: Tensor, cur: Tensor, best: Tensor, dist: Tensor) -> None:
        """Record the (adversarial) points `cur` of the images `idx` that are nearer."""
        nd = self._dist(cur, x[idx])
        better = nd < dist[idx]
        best[idx[better]], dist[idx[better]] = cur[better], nd[better]

    def _initial_points(self, oracle: _Oracle, x: Tensor, idx: Tensor,
                        generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(found `[m]`, a starting adversarial point `[m, ...]`) for the images `idx`:
        uniform noise until misclassified, then the nearest adversarial blend with x."""
        xs = x[idx]
        noise = torch.zeros_like(xs)
        found = torch.zeros(len(idx), dtype=torch.bool, device=x.device)
        for _ in range(self.init_trials):
            draw = torch.rand(xs.shape, generator=generator, device=x.device, dtype=x.dtype)
            ask = (~found & (oracle.left(idx) > 0)).nonzero()[:, 0]
            if ask.numel() == 0:
                break
            hit = oracle.adversarial(draw[ask], idx[ask])
            noise[ask[hit]], found[ask[hit]] = draw[ask[hit]], True
        low = torch.zeros(len(idx), device=x.device, dtype=x.dtype)
        high = torch.ones_like(low)
        while True:
            ask = (found & (high - low > _INIT_TOL) & (oracle.left(idx) > 0)).nonzero()[:, 0]
            if ask.numel() == 0:
                break
            mid = (low[ask] + high[ask]) / 2
            hit = oracle.adversarial(_blend(xs[ask], noise[ask], mid), idx[ask])
            high[ask] = torch.where(hit, mid, high[ask])
            low[ask] = torch.where(hit, low[ask], mid)
        return found, _blend(xs, noise, high)

    def _boundary(self, oracle: _Oracle, xs: Tensor, p: Tensor, idx: Tensor,
                  theta: float) -> tuple[Tensor, Tensor]:
        """Binary search between `xs` and the adversarial `p` (l2: on the blend, linf: on the
        clipping box's radius) to the threshold; returns (the adversarial end, its distance)."""
        if self.norm == "l2":
            high = torch.ones(len(p), device=p.device, dtype=p.dtype)
            tol = torch.full_like(high, theta)
            move = _blend
        else:
            high = self._dist(p, xs)
            tol = torch.clamp(high * theta, max=theta)
            move = _clip_box
        low = torch.zeros_like(high)
        while True:
            ask = ((high - low > tol) & (oracle.left(idx) > 0)).nonzero()[:, 0]
            if ask.numel() == 0:
                break
            mid = (low[ask] + high[ask]) / 2
            hit = oracle.adversarial(move(xs[ask], p[ask], mid), idx[ask])
            high[ask] = torch.where(hit, mid, high[ask])
            low[ask] = torch.where(hit, low[ask], mid)
        out = move(xs, p, high)
        return out, self._dist(out, xs)

    def _direction(self, oracle: _Oracle, cur: Tensor, idx: Tensor, delta: Tensor,
                   n_evals: int, generator: torch.Generator) -> Tensor:
        """Unit estimate `[m, ...]` of the gradient direction at the boundary points `cur`
        from `n_evals` sign queries each (fewer where the budget has fewer left)."""
        m, shape = len(cur), cur.shape[1:]
        per = oracle.left(idx).clamp(max=n_evals)  # > 0: `_active` asked for 2 left
        grads = torch.empty_like(cur)
        group = max(1, _ROWS // n_evals)
        for g0 in range(0, m, group):
            rows = slice(g0, min(g0 + group, m))
            c, k = cur[rows], len(cur[rows])
            if self.norm == "l2":
                rv = torch.randn((k, n_evals, *shape), generator=generator,
                                 device=cur.device, dtype=cur.dtype)
            else:
                rv = torch.rand((k, n_evals, *shape), generator=generator,
                                device=cur.device, dtype=cur.dtype) * 2 - 1
            rv = rv / lp_norm(rv.flatten(0, 1), "l2").view(k, n_evals, *[1] * len(shape))
            dv = eps_view(delta[rows], c)[:, None]
            probe = (c[:, None] + dv * rv).clamp(0.0, 1.0)
            rv = (probe - c[:, None]) / dv
            valid = torch.arange(n_evals, device=cur.device)[None, :] < per[rows, None]
            owners = idx[rows, None].expand(k, n_evals)
            hit = torch.zeros(k, n_evals, dtype=cur.dtype, device=cur.device)
            hit[valid] = oracle.adversarial(probe[valid], owners[valid]).to(cur.dtype)
            grads[rows] = self._sign_average(rv, hit, valid)
        norm = lp_norm(grads, "l2").clamp_min(1e-12)
        return grads / eps_view(norm, grads)

    @staticmethod
    def _sign_average(rv: Tensor, hit: Tensor, valid: Tensor) -> Tensor:
        """The paper's baseline-corrected average of `fval * u` over the valid queries
        (`fval = +1` adversarial, `-1` not); all one sign: `+-` the mean direction."""
        w = valid.to(rv.dtype)
        count = w.sum(1).clamp_min(1)
        fval = (2 * hit - 1) * w
        mean = fval.sum(1) / count
        one_sign = mean.abs()[:, None] == 1
        centred = torch.where(one_sign, mean[:, None] * w, (fval - mean[:, None]) * w)
        view = (*centred.shape, *[1] * (rv.dim() - 2))
        return (centred.view(view) * rv).sum(1) / eps_view(count, rv[:, 0])

    def _step(self, oracle: _Oracle, cur: Tensor, idx: Tensor, update: Tensor,
              size: Tensor) -> Tensor:
        """Geometric step search: `cur + size * update` (clipped to [0, 1]), halving `size`
        until adversarial; an image whose budget runs out (or that halves `_MAX_HALVINGS`
        times) keeps its point."""
        out = cur.clone()
        size = size.clone()
        todo = torch.ones(len(cur), dtype=torch.bool, device=cur.device)
        for _ in range(_MAX_HALVINGS):
            ask = (todo & (oracle.left(idx) > 1)).nonzero()[:, 0]  # keep one for the search
            if ask.numel() == 0:
                break
            cand = (cur[ask] + eps_view(size[ask], cur[ask]) * update[ask]).clamp(0.0, 1.0)
            hit = oracle.adversarial(cand, idx[ask])
            out[ask[hit]] = cand[hit]
            todo[ask[hit]] = False
            size[ask[~hit]] /= 2
        return out
