"""Carlini–Wagner L2 attack (Carlini & Wagner, 2017): minimal-L2 adversarial examples.

Optimises `w` with `x_adv = (tanh(w) + 1) / 2` (always in [0, 1]) to minimise
`||x_adv - x||_2^2 + c * f(x_adv)`, `f = max(z_y - max_{j != y} z_j, -kappa)` (untargeted;
targeted: `max(max_{j != t} z_j - z_t, -kappa)`), with Adam (`lr`) for `steps` iterations per
value of `c`. A per-sample binary search over `c` (`binary_search_steps` rounds starting at
`c_init`; x10 while no adversarial was found, bisection afterwards) trades distortion for
success. Returns, per sample, the adversarial point of smallest L2 distortion found (the
clean input where none was found, or where the clean input is adversarial already).
`attack.last_norms` `[N]` holds the L2 norms of the returned perturbations (inf where the
attack failed, 0 where the clean input was adversarial); `attack.last_success` `[N]` bools.

The attack is unbounded: `eps` is not used (it may be passed and is ignored).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, AttackModel
from robustlab.attacks.losses import is_adversarial, margin_loss
from robustlab.attacks.norms import eps_view, lp_norm
from robustlab.attacks.progress import step_reporter
from robustlab.common.options import Option
from robustlab.registry import ATTACKS

_ATANH_CLAMP = 1 - 1e-6


@ATTACKS.register("cw-l2")
class CarliniWagnerL2(Attack):
    """Minimal-L2 adversarial examples (an L2 attack: `norm` is l2 only). `lr` 5e-2 is larger
    than the paper's 1e-2 because pixels at exactly 0 or 1 start deep in tanh's saturation
    and need ~600 Adam steps at 1e-2 to move at all. `eps` is accepted and ignored."""

    quick_options = {"steps": 10, "binary_search_steps": 2}

    bounded = False
    needs_eps = False
    OPTIONS = {
        "norm": Option("l2", "choice", "an L2 attack", choices=("l2",)),
        "kappa": Option(0.0, "float", "confidence: the margin a success must reach", low=0.0),
        "c_init": Option(1e-2, "float", "first weight c of the misclassification term",
                         low=0.0, low_open=True),
        "binary_search_steps": Option(9, "int", "rounds of the per-sample search over c",
                                      low=1),
        "steps": Option(100, "int", "Adam iterations per value of c", low=1),
        "lr": Option(5e-2, "float", "Adam learning rate", low=0.0, low_open=True),
        "abort_early": Option(True, "bool", "stop a round when the objective stalls"),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.eps = None  # unbounded: the threat-model radius plays no role
        self.last_norms: Tensor | None = None
        self.last_success: Tensor | None = None

    def attack_with_norms(
        self, model, x: Tensor, y: Tensor, target: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """`(x_adv, l2_norms)`: the attack's output and its per-sample L2 distortion `[N]`."""
        x_adv = self(model, x, y, target)
        assert self.last_norms is not None
        return x_adv, self.last_norms

    def _success(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        ok = is_adversarial(logits, y, target)
        if self.kappa > 0:
            ok = ok & (margin_loss(logits, y, target) >= self.kappa)
        return ok

    def perturb(self, model: AttackModel, x, y, eps, target, generator):
        n = x.shape[0]
        dev = x.device
        best_x = x.clone()
        best_norm = torch.full((n,), float("inf"), device=dev, dtype=x.dtype)
        clean_adv = model.is_adversarial(x, y, target)
        best_norm[clean_adv] = 0.0
        idx = (~clean_adv).nonzero().flatten()
        c_all = torch.full((n,), self.c_init, device=dev, dtype=x.dtype)
        lower = torch.zeros(n, device=dev, dtype=x.dtype)
        upper = torch.full((n,), float("inf"), device=dev, dtype=x.dtype)
        kappa = self.kappa
        x_att, y_att = x[idx], y[idx]
        t_att = target[idx] if target is not None else None
        w0 = torch.atanh((x_att * 2 - 1).clamp(-_ATANH_CLAMP, _ATANH_CLAMP))

        def f_loss(logits: Tensor, yy: Tensor, tt: Tensor | None) -> Tensor:
            # gradient of -f (ascent form), f = max(-margin, -kappa)
            return margin_loss(logits, yy, tt, kappa=kappa)

        b1, b2, adam_eps = 0.9, 0.999, 1e-8
        reporter = step_reporter(self, self.binary_search_steps * self.steps, n,
                                 measure="not yet fooled (any L2)")
        for _round in range(self.binary_search_steps):
            if idx.numel() == 0:
                break
            c = eps_view(c_all[idx], x_att)
            w = w0.clone()
            m = torch.zeros_like(w)
            v = torch.zeros_like(w)
            succeeded = torch.zeros(idx.numel(), dtype=torch.bool, device=dev)
            prev_obj = float("inf")
            check_every = max(self.steps // 10, 1)
            for it in range(1, self.steps + 1):
                tw = torch.tanh(w)
                xa = model.prepare((tw + 1) / 2)
                g = model.gradient(xa, y_att, f_loss, t_att)
                delta = xa - x_att
                l2sq = delta.reshape(delta.shape[0], -1).pow(2).sum(1)
                # record the iterate before updating w
                ok = self._success(g.logits, y_att, t_att)
                norms = l2sq.sqrt()
                improved = ok & (norms < best_norm[idx])
                if bool(improved.any()):
                    rows = idx[improved]
                    best_norm[rows] = norms[improved]
                    best_x[rows] = xa[improved]
                succeeded |= ok
                # d/dx [||x - x0||^2 + c * f] with f's gradient = -grad(margin)
                grad_x = 2 * delta - c * g.grad
                grad_w = grad_x * (1 - tw * tw) / 2
                m = b1 * m + (1 - b1) * grad_w
                v = b2 * v + (1 - b2) * grad_w * grad_w
                m_hat = m / (1 - b1**it)
                v_hat = v / (1 - b2**it)
                w = w - self.lr * m_hat / (v_hat.sqrt() + adam_eps)
                if reporter is not None:
                    reporter.step(_round * self.steps + it,
                                  lambda: int(torch.isinf(best_norm).sum()))
                if self.abort_early and it % check_every == 0:
                    obj = float((l2sq - c.flatten() * g.loss).sum())
                    if obj > prev_obj * 0.9999:
                        break
                    prev_obj = obj
            # binary search on c, per sample
            ci = c_all[idx]
            up, lo = upper[idx], lower[idx]
            up = torch.where(succeeded, torch.minimum(up, ci), up)
            lo = torch.where(succeeded, lo, torch.maximum(lo, ci))
            new_c = torch.where(torch.isinf(up), ci * 10, (lo + up) / 2)
            upper[idx], lower[idx], c_all[idx] = up, lo, new_c
        self.last_norms = lp_norm(best_x - x, "l2").where(
            torch.isfinite(best_norm), torch.full_like(best_norm, float("inf"))
        )
        self.last_norms[clean_adv] = 0.0
        self.last_success = torch.isfinite(self.last_norms)
        return best_x
