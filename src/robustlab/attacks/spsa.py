"""SPSA (Uesato, O'Donoghue, van den Oord and Kohli, ICML 2018): score-based, linf.

Uses only the model's logits (no gradient; under `torch.no_grad()`). The loss is the margin
on the logits, as in the paper (`max_{j != y} z_j - z_y`, targeted `z_t - max_{j != t} z_j`;
maximised, > 0 = adversarial). Each of `steps` iterations estimates its gradient at the
current point from `samples` random Rademacher directions v (each entry +-1), queried at
both `x' + delta v` and `x' - delta v`:

    g = mean_i (L(x' + delta v_i) - L(x' - delta v_i)) / (2 delta) * v_i

then takes one Adam step (learning rate `lr`, betas 0.9 / 0.999) on the perturbation and
projects it onto the eps-ball intersected with [0, 1]. The start is the clean image; the
probes are clipped to [0, 1] (the images a model takes). An
image stops once adversarial (the paper's early stop); the best iterate is returned.

Queries per image: 1 (the clean point) + per iteration 2 x `samples` (the estimate) + 1
(the new point); after a call, `last_queries` `[N]` holds each image's count. The random
directions are drawn for groups of images in a fixed order, so an image stopping early
changes no other image's draws.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, AttackModel
from robustlab.attacks.losses import margin_loss
from robustlab.attacks.norms import eps_view
from robustlab.common.options import Option
from robustlab.registry import ATTACKS

_ROWS = 8192  # inputs per forward pass of the estimate
_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


@ATTACKS.register("spsa")
class SPSA(Attack):
    """SPSA, linf (score-based; see the module docstring)."""

    quick_options = {"steps": 3, "samples": 4}

    gradient_based = False
    OPTIONS = {
        "norm": Option("linf", "choice", "threat-model norm: linf only", choices=("linf",)),
        "steps": Option(100, "int", "iterations (each 2 x samples + 1 queries per image)",
                        low=1),
        "samples": Option(64, "int", "random Rademacher directions per iteration, each "
                          "queried at +delta and -delta", low=1),
        "delta": Option(0.01, "float", "finite-difference step (pixel units)", low=0.0,
                        low_open=True),
        "lr": Option(0.01, "float", "Adam learning rate", low=0.0, low_open=True),
    }

    #: after a call: the queries `[N]` each sample used (None before the first call)
    last_queries: Tensor | None = None

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
            ev = eps_view(eps, x)
            lo, hi = (x - ev).clamp(min=0.0), (x + ev).clamp(max=1.0)
            best_loss = margin_loss(model.logits(x), y, target)
            queries = torch.ones(len(x), dtype=torch.long, device=x.device)
            best, cur = x.clone(), x.clone()
            m, v = torch.zeros_like(x), torch.zeros_like(x)
            done = (best_loss > 0) | (eps <= 0)
            for t in range(1, self.steps + 1):
                if bool(done.all()):
                    break
                grad = self._estimate(model, cur, y, target, ~done, generator)
                act = (~done).nonzero()[:, 0]
                queries[act] += 2 * self.samples + 1
                m[act] = _BETAS[0] * m[act] + (1 - _BETAS[0]) * grad[act]
                v[act] = _BETAS[1] * v[act] + (1 - _BETAS[1]) * grad[act] ** 2
                mh, vh = m[act] / (1 - _BETAS[0] ** t), v[act] / (1 - _BETAS[1] ** t)
                step = self.lr * mh / (vh.sqrt() + _ADAM_EPS)
                cur[act] = torch.minimum(torch.maximum(cur[act] + step, lo[act]), hi[act])
                ta = None if target is None else target[act]
                loss = margin_loss(model.logits(model.prepare(cur[act])), y[act], ta)
                better = loss > best_loss[act]
                best[act[better]], best_loss[act[better]] = cur[act[better]], loss[better]
                done[act] = best_loss[act] > 0
            self.last_queries = queries
            return best

    def _estimate(self, model: AttackModel, cur: Tensor, y: Tensor, target: Tensor | None,
                  active: Tensor, generator: torch.Generator) -> Tensor:
        """The SPSA gradient estimate `[N, ...]` of the margin at `cur` for the `active`
        images (zeros elsewhere). Directions are drawn for every image of each fixed group."""
        n, shape, k = len(cur), cur.shape[1:], self.samples
        grad = torch.zeros_like(cur)
        group = max(1, _ROWS // (2 * k))
        for g0 in range(0, n, group):
            rows = torch.arange(g0, min(g0 + group, n), device=cur.device)
            bits = torch.randint(0, 2, (len(rows), k, *shape), generator=generator,
                                 device=cur.device, dtype=torch.uint8)  # 3x faster than int64
            rows_on = active[rows]
            if not bool(rows_on.any()):
                continue
            rows, vs = rows[rows_on], bits[rows_on].to(cur.dtype).mul_(2).sub_(1)
            c = cur[rows][:, None]
            probes = torch.cat([c + self.delta * vs, c - self.delta * vs], 1).clamp(0.0, 1.0)
            owners = rows.repeat_interleave(2 * k)
            ts = None if target is None else target[owners]
            logits = model.logits(model.prepare(probes.flatten(0, 1)))
            loss = margin_loss(logits, y[owners], ts).view(len(rows), 2 * k)
            diff = (loss[:, :k] - loss[:, k:]) / (2 * self.delta)
            grad[rows] = (diff.view(*diff.shape, *[1] * len(shape)) * vs).mean(1)
        return grad
