"""DDN, Decoupled Direction and Norm (Rony, Hafemann, Oliveira, Ben Ayed, Sabourin & Granger,
CVPR 2019, "Decoupling Direction and Norm for Efficient Gradient-Based L2 Adversarial Attacks
and Defenses"): minimal-L2 adversarial examples.

DDN keeps a radius `r` per sample (`init_norm` at first) and, at every step, moves `delta`
by `alpha` along the L2-normalised gradient of the cross-entropy (targeted: minus the
cross-entropy of the target; a zero gradient is replaced by a random direction), shrinks
`r` by the factor `1 - gamma` where the iterate is adversarial and grows it by `1 + gamma`
where it is not (capped by the largest possible norm `||max(x, 1 - x)||_2`), and rescales
`delta` to norm `r`, clips `x + delta` to [0, 1] and (option `levels`) rounds it to that many
grey levels. `alpha` decays from 1 to 0.01 with a cosine schedule. The smallest adversarial
iterate per sample is returned (the input where none was found). Reference implementation
read for comparison: adv-lib's `ddn` (0.2.8).

Unbounded: `eps` is accepted and ignored; the distances come from
`attack.run(model, x, y)` (`attacks/min_norm.py`).
"""

from __future__ import annotations

import math

import torch

from robustlab.attacks.base import AttackModel
from robustlab.attacks.losses import ce_loss
from robustlab.attacks.min_norm import MinNormAttack
from robustlab.attacks.norms import eps_view
from robustlab.attacks.progress import step_reporter
from robustlab.common.options import Option
from robustlab.registry import ATTACKS

_TINY = 1e-12


@ATTACKS.register("ddn")
class DDN(MinNormAttack):
    """Decoupled Direction and Norm (Rony et al., 2019), an L2 attack (`norm` is l2 only);
    the defaults are the paper's (gamma 0.05, init_norm 1, 256 levels). `eps` is accepted and
    ignored: `attack.run(model, x, y)` gives the per-image minimal L2 distances."""

    quick_options = {"steps": 10}

    OPTIONS = {
        "norm": Option("l2", "choice", "an L2 attack", choices=("l2",)),
        "steps": Option(100, "int", "iterations", low=1),
        "gamma": Option(0.05, "float", "relative change of the radius per step",
                        low=0.0, high=1.0, low_open=True, high_open=True),
        "init_norm": Option(1.0, "float", "first radius", low=0.0, low_open=True),
        "levels": Option(256, "int", "grey levels the iterates are rounded to (null: no "
                         "rounding)", low=2, allow_none=True),
    }

    def perturb(self, model: AttackModel, x, y, eps, target, generator):
        n = x.shape[0]
        delta = torch.zeros_like(x)
        worst = torch.maximum(x, 1 - x).reshape(n, -1).norm(p=2, dim=1)
        best_norm, best_x = worst.clone(), x.clone()
        r = torch.full_like(worst, self.init_norm)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        reporter = step_reporter(self, self.steps, n, measure="not yet fooled (any L2)")
        for i in range(self.steps):
            size = delta.reshape(n, -1).norm(p=2, dim=1)
            x_adv = model.prepare(x + delta)
            g = model.gradient(x_adv, y, ce_loss, target)
            adv = g.logits.argmax(1) != y if target is None else g.logits.argmax(1) == target
            better = adv & (size < best_norm)
            best_norm = torch.where(better, size, best_norm)
            best_x = torch.where(eps_view(better, x), x_adv, best_x)
            found.logical_or_(adv)
            gn = g.grad.reshape(n, -1).norm(p=2, dim=1)
            direction = g.grad / eps_view(gn.clamp_min(_TINY), x)
            if bool((gn < _TINY).any()):  # a zero gradient: a random direction instead
                noise = torch.randn(x.shape, generator=generator, device=x.device,
                                    dtype=x.dtype)
                noise = noise / eps_view(noise.reshape(n, -1).norm(p=2, dim=1), x)
                direction = torch.where(eps_view(gn < _TINY, x), noise, direction)
            alpha = 0.01 + (1 - 0.01) * (1 + math.cos(math.pi * i / self.steps)) / 2
            delta = delta + alpha * direction
            r = torch.minimum(torch.where(adv, (1 - self.gamma) * r, (1 + self.gamma) * r),
                              worst)
            scale = r / delta.reshape(n, -1).norm(p=2, dim=1).clamp_min(_TINY)
            x_next = (x + delta * eps_view(scale, x)).clamp(0.0, 1.0)
            if self.levels is not None:
                x_next = (x_next * (self.levels - 1)).round() / (self.levels - 1)
            delta = x_next - x
            if reporter is not None:
                reporter.step(i + 1, lambda: int((~found).sum()))
        return best_x
