"""The training objectives as plain functions, for your own training loop.

    loss = trades_loss(model, x, y, eps=0.3)        # then loss.backward(); optimizer.step()
    hybrid = HybridLoss(eps=0.3, epochs=6)          # the paper's adaptive loss and its state
    loss = hybrid(model, x, y, progress=epoch + i / steps)
    hybrid.update(clean_acc, adv_acc)               # after each epoch, on held-out data

The registered methods (`pgd-at`, `trades`, `mart`, `hybrid`) compute their losses with these
same functions. Shapes: `x` `[N, C, H, W]` in [0, 1], `y` `[N]` int64; `eps` and `step_size`
in pixel units of the `norm` ball ("linf" | "l2"). Each returns the batch-mean loss (a scalar
with a graph through the model's parameters); `return_logits=True` also returns the clean
(for PGD-AT: adversarial) logits, detached. The inner attacks touch no parameter `.grad`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.training.methods.eps_schedule import ramp_fraction, scheduled_eps
from robustlab.training.methods.perturb import (
    differentiable_forward,
    input_gradient_mode,
    pgd,
    step_from,
    unwrap,
)
from robustlab.training.methods.validation import adaptive_alpha

_TINY = 1e-12


def _step(eps: float, steps: int, step_size: float | None) -> float:
    return step_size if step_size is not None else 2.5 * eps / steps


def pgd_at_loss(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                steps: int = 10, step_size: float | None = None, return_logits: bool = False):
    """Madry et al. (2018): `CE(f(x_adv), y)`, x_adv from PGD-`steps` with a random start
    (step `2.5 eps / steps` unless `step_size`)."""
    x_adv = pgd(model, x, y, eps, norm, steps=steps, step=_step(eps, steps, step_size))
    logits = model(x_adv)
    loss = F.cross_entropy(logits, y)
    return (loss, logits.detach()) if return_logits else loss


def trades_loss(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                beta: float = 6.0, steps: int = 10, step_size: float | None = None,
                init_std: float = 0.001, return_logits: bool = False):
    """Zhang et al. (2019): `CE(f(x), y) + beta * KL(p(x) || p(x_adv))`, x_adv maximising the
    KL from `x + init_std * N(0, 1)` in `steps` projected steps. The clean forward is made
    once and reused (its detached probabilities are the attack's target)."""
    step = _step(eps, steps, step_size)
    logits = model(x)
    p_clean = F.softmax(logits.detach(), dim=1)
    x_adv = (x + init_std * torch.randn_like(x)).clamp(0.0, 1.0)
    net = differentiable_forward(unwrap(model))  # no gradient synchronisation needed
    with input_gradient_mode(model, x):
        for _ in range(steps):
            xr = x_adv.detach().requires_grad_(True)
            kl = F.kl_div(F.log_softmax(net(xr), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, xr)
            x_adv = step_from(x, xr.detach(), grad, step, eps, norm)
    robust = F.kl_div(F.log_softmax(model(x_adv.detach()), dim=1), F.softmax(logits, dim=1),
                      reduction="batchmean")
    loss = F.cross_entropy(logits, y) + beta * robust
    return (loss, logits.detach()) if return_logits else loss


def mart_loss(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
              beta: float = 6.0, steps: int = 10, step_size: float | None = None,
              return_logits: bool = False):
    """Wang et al. (2020): `BCE(f(x_adv), y) + beta * mean KL(p(x) || p(x_adv)) (1 - p_y(x))`,
    with the boosted CE `BCE = CE - log(1 - max_{j != y} p_j(x_adv))`; x_adv from PGD."""
    x_adv = pgd(model, x, y, eps, norm, steps=steps, step=_step(eps, steps, step_size))
    logits = model(x)
    logits_adv = model(x_adv)
    p_adv = F.softmax(logits_adv, dim=1)
    wrong = p_adv.scatter(1, y[:, None], 0.0).amax(dim=1)  # strongest wrong class
    bce = F.cross_entropy(logits_adv, y) - torch.log(1.0 - wrong + _TINY).mean()
    p_clean = F.softmax(logits, dim=1)
    kl = (p_clean * (torch.log(p_clean + _TINY) - torch.log(p_adv + _TINY))).sum(dim=1)
    true_p = p_clean.gather(1, y[:, None])[:, 0]
    loss = bce + beta * (kl * (1.0 - true_p)).mean()
    return (loss, logits.detach()) if return_logits else loss


@dataclass
class HybridLoss:
    """The paper's hybrid objective with its state: `L = a CE(f(x), y) + (1 - a) CE(f(x_adv), y)`
    on the clean batch and its PGD-`steps` copy at the ramped budget eps_t (eps/10 -> eps,
    linear over `ramp` of `epochs`), and `a = acc_adv / (acc_adv + acc_clean)` set by `update`
    from accuracies measured on held-out data (`alpha` before the first update)."""

    eps: float
    epochs: float
    norm: str = "linf"
    steps: int = 2
    ramp: float = 0.5
    alpha: float = 0.5

    def __post_init__(self) -> None:
        if not (self.eps >= 0 and self.epochs > 0 and 0 < self.ramp <= 1 and self.steps >= 1):
            raise ValueError(f"HybridLoss: expected eps >= 0, epochs > 0, 0 < ramp <= 1, "
                             f"steps >= 1; got eps={self.eps}, epochs={self.epochs}, "
                             f"ramp={self.ramp}, steps={self.steps}")

    def eps_at(self, progress: float) -> float:
        """The budget after `progress` epochs (a float: epoch + fraction of it)."""
        fraction = ramp_fraction(progress, self.ramp * self.epochs)
        return scheduled_eps("linear", self.eps, self.eps / 10, fraction)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, progress: float) -> Tensor:
        eps_t = self.eps_at(progress)
        x_adv = pgd(model, x, y, eps_t, self.norm, steps=self.steps,
                    step=_step(eps_t, self.steps, None))
        ce_clean = F.cross_entropy(model(x), y)
        ce_adv = F.cross_entropy(model(x_adv), y)
        return self.alpha * ce_clean + (1.0 - self.alpha) * ce_adv

    def update(self, clean_acc: float, adv_acc: float) -> float:
        """Set `alpha` from validation accuracies (fractions); returns the new value."""
        self.alpha = adaptive_alpha(clean_acc, adv_acc)
        return self.alpha
