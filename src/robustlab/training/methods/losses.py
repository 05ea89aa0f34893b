"""The training objectives as plain functions, for your own training loop.

    loss = trades_loss(model, x, y, eps=0.3)        # then loss.backward(); optimizer.step()
    loss = hybrid_loss(model, x, y, eps=0.3, alpha=0.5)   # the paper's loss at one eps, alpha
    hybrid = HybridLoss(eps=0.3, epochs=6)          # ... with its state: eps ramp, adaptive alpha
    loss = hybrid(model, x, y, progress=epoch + i / steps)
    hybrid.update(clean_acc, adv_acc)               # after each epoch, on held-out data

The registered methods compute their losses with these same functions: `pgd-at`, `fgsm-rs`
and `n-fgsm` with `pgd_at_loss`, `trades` with `trades_loss`, `mart` with `mart_loss`, the
hybrid family (`hybrid`, `mix`, ...) with `hybrid_loss` (its FGSM generator through
`hybrid_backward`, which shares the clean pass's backward) and `next_alpha`. Shapes: `x`
`[N, C, H, W]` in [0, 1], `y` `[N]` int64; `eps` and `step_size` in pixel units of the `norm`
ball ("linf" | "l2"). Each returns the batch-mean loss (a scalar with a graph through the
model's parameters); `return_logits=True` also returns the clean (for `pgd_at_loss`: the
adversarial) logits, detached. The inner attacks touch no parameter `.grad`.

`label_smoothing=s` (default 0: none; `TrainConfig.label_smoothing`) smooths the targets of
the objective's cross-entropy terms, `F.cross_entropy(..., label_smoothing=s)`: (1 - s) on the
label plus s / K on every class. Never the losses the inner attacks maximise (their x_adv is
the same with or without it), nor TRADES' and MART's KL terms.

Each loss is written as two halves, also used by adversarial weight perturbation
(`awp.py`), which needs the objective at a fixed x_adv: `*_examples` (x_adv) and
`*_objective` (the formula on given logits; `hybrid_objective_on` runs the two forwards).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.common import checks
from robustlab.training.methods.eps_schedule import ramp_fraction, scheduled_eps
from robustlab.training.methods.perturb import (
    differentiable_forward,
    fgsm,
    generate,
    input_gradient_mode,
    pgd,
    step_from,
    training_pass_kernels,
    unwrap,
)
from robustlab.training.methods.validation import adaptive_alpha

_TINY = 1e-12


def _step(eps: float, steps: int, step_size: float | None) -> float:
    """TRADES' and MART's inner step: `step_size`, else `2.5 * eps / steps` (computed so)."""
    return step_size if step_size is not None else 2.5 * eps / steps


def pgd_at_loss(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                steps: int = 10, step_size: float | None = None, random_start: bool = True,
                generator: str = "pgd", noise_mult: float = 2.0, return_logits: bool = False,
                label_smoothing: float = 0.0):
    """Madry et al. (2018): `CE(f(x_adv), y)`, x_adv from PGD-`steps` (random start unless
    `random_start=False`; step `2.5 eps / steps` unless `step_size`). `generator` "fgsm-rs"
    (Wong et al. 2020), "n-fgsm" (de Jorge et al. 2022, noise `noise_mult` eps) or "fgsm" makes
    the single-step copies instead (`perturb.generate`)."""
    x_adv = pgd_at_examples(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size,
                            random_start=random_start, generator=generator,
                            noise_mult=noise_mult)
    logits = model(x_adv)
    loss = pgd_at_objective(logits, y, label_smoothing=label_smoothing)
    return (loss, logits.detach()) if return_logits else loss


def pgd_at_examples(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                    steps: int = 10, step_size: float | None = None, random_start: bool = True,
                    generator: str = "pgd", noise_mult: float = 2.0) -> Tensor:
    """The x_adv of `pgd_at_loss` (same arguments)."""
    return generate(generator, model, x, y, eps, norm, steps=steps, step=step_size,
                    noise_mult=noise_mult, random_start=random_start)


def pgd_at_objective(logits_adv: Tensor, y: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
    """`CE(f(x_adv), y)` on the given adversarial logits `[B, K]`."""
    return F.cross_entropy(logits_adv, y, label_smoothing=label_smoothing)


def trades_loss(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                beta: float = 6.0, steps: int = 10, step_size: float | None = None,
                init_std: float = 0.001, return_logits: bool = False,
                label_smoothing: float = 0.0):
    """Zhang et al. (2019): `CE(f(x), y) + beta * KL(p(x) || p(x_adv))`, x_adv maximising the
    KL from `x + init_std * N(0, 1)` in `steps` projected steps. The clean forward is made
    once and reused (its detached probabilities are the attack's target)."""
    logits = model(x)
    x_adv = trades_examples(model, x, F.softmax(logits.detach(), dim=1), eps=eps, norm=norm,
                            steps=steps, step_size=step_size, init_std=init_std)
    loss = trades_objective(logits, model(x_adv), y, beta=beta,
                            label_smoothing=label_smoothing)
    return (loss, logits.detach()) if return_logits else loss


def trades_examples(model: nn.Module, x: Tensor, p_clean: Tensor, *, eps: float,
                    norm: str = "linf", steps: int = 10, step_size: float | None = None,
                    init_std: float = 0.001) -> Tensor:
    """TRADES' x_adv (detached): the KL to the clean probabilities `p_clean` `[B, K]`
    (detached) maximised from `x + init_std * N(0, 1)` in `steps` projected steps."""
    step = _step(eps, steps, step_size)
    x_adv = (x + init_std * torch.randn_like(x)).clamp(0.0, 1.0)
    net = differentiable_forward(unwrap(model))  # no gradient synchronisation needed
    with input_gradient_mode(model, x):
        for _ in range(steps):
            xr = x_adv.detach().requires_grad_(True)
            kl = F.kl_div(F.log_softmax(net(xr), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, xr)
            x_adv = step_from(x, xr.detach(), grad, step, eps, norm)
    return x_adv.detach()


def trades_objective(logits: Tensor, logits_adv: Tensor, y: Tensor, *, beta: float = 6.0,
                     label_smoothing: float = 0.0) -> Tensor:
    """`CE(logits, y) + beta * KL(softmax(logits) || softmax(logits_adv))` (batch mean) on the
    clean and adversarial logits `[B, K]`; the smoothing touches the CE term only."""
    robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1),
                      reduction="batchmean")
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing) + beta * robust


def mart_loss(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
              beta: float = 6.0, steps: int = 10, step_size: float | None = None,
              return_logits: bool = False, label_smoothing: float = 0.0):
    """Wang et al. (2020): `BCE(f(x_adv), y) + beta * mean KL(p(x) || p(x_adv)) (1 - p_y(x))`,
    with the boosted CE `BCE = CE - log(1 - max_{j != y} p_j(x_adv))`; x_adv from PGD."""
    x_adv = mart_examples(model, x, y, eps=eps, norm=norm, steps=steps, step_size=step_size)
    logits = model(x)
    loss = mart_objective(logits, model(x_adv), y, beta=beta, label_smoothing=label_smoothing)
    return (loss, logits.detach()) if return_logits else loss


def mart_examples(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                  steps: int = 10, step_size: float | None = None) -> Tensor:
    """MART's x_adv: PGD-`steps` on cross-entropy (step `2.5 eps / steps` unless `step_size`)."""
    return pgd(model, x, y, eps, norm, steps=steps, step=_step(eps, steps, step_size))


def mart_objective(logits: Tensor, logits_adv: Tensor, y: Tensor, *, beta: float = 6.0,
                   label_smoothing: float = 0.0) -> Tensor:
    """MART's loss on the clean and adversarial logits `[B, K]` (see `mart_loss`); the
    smoothing touches the CE part of the boosted CE only."""
    p_adv = F.softmax(logits_adv, dim=1)
    wrong = p_adv.scatter(1, y[:, None], 0.0).amax(dim=1)  # strongest wrong class
    bce = (F.cross_entropy(logits_adv, y, label_smoothing=label_smoothing)
           - torch.log(1.0 - wrong + _TINY).mean())
    p_clean = F.softmax(logits, dim=1)
    kl = (p_clean * (torch.log(p_clean + _TINY) - torch.log(p_adv + _TINY))).sum(dim=1)
    true_p = p_clean.gather(1, y[:, None])[:, 0]
    return bce + beta * (kl * (1.0 - true_p)).mean()


def hybrid_objective(alpha: float, ce_clean: Tensor, ce_adv: Tensor) -> Tensor:
    """The paper's weighted sum `a * CE(f(x), y) + (1 - a) * CE(f(x_adv), y)`: the one place
    the formula is written (the method's logged loss and `hybrid_loss` use it)."""
    return alpha * ce_clean + (1.0 - alpha) * ce_adv


def hybrid_loss(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, alpha: float,
                norm: str = "linf", generator: str = "pgd", steps: int = 2,
                step_size: float | None = None, noise_mult: float = 2.0,
                return_logits: bool = False, label_smoothing: float = 0.0):
    """The paper's hybrid loss on the clean batch and its adversarial copy (D ∪ D_adv) at
    budget `eps`: `hybrid_objective(alpha, CE(f(x), y), CE(f(x_adv), y))`, x_adv from
    `generator` (default PGD-`steps` with a random start, step `2.5 eps / steps` unless
    `step_size`; see `perturb.generate`). The copy is made first, then the clean forward, then
    the adversarial one."""
    x_adv = hybrid_examples(model, x, y, eps=eps, norm=norm, generator=generator, steps=steps,
                            step_size=step_size, noise_mult=noise_mult)
    loss, logits = hybrid_objective_on(model, x, y, x_adv, alpha=alpha,
                                       label_smoothing=label_smoothing)
    return (loss, logits.detach()) if return_logits else loss


def hybrid_examples(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, norm: str = "linf",
                    generator: str = "pgd", steps: int = 2, step_size: float | None = None,
                    noise_mult: float = 2.0) -> Tensor:
    """The hybrid's adversarial copy x_adv (the arguments of `hybrid_loss`)."""
    return generate(generator, model, x, y, eps, norm, steps=steps, step=step_size,
                    noise_mult=noise_mult)


def hybrid_objective_on(model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, *,
                        alpha: float, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
    """(`hybrid_objective` of the clean and the adversarial cross-entropies, the clean logits
    with their graph): the clean forward first, then the adversarial one."""
    logits = model(x)
    loss = hybrid_objective(alpha, F.cross_entropy(logits, y, label_smoothing=label_smoothing),
                            F.cross_entropy(model(x_adv), y, label_smoothing=label_smoothing))
    return loss, logits


def hybrid_backward(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
                    *, eps: float, alpha: float, norm: str = "linf", generator: str = "pgd",
                    steps: int = 2, step_size: float | None = None,
                    noise_mult: float = 2.0,
                    label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
    """The gradient of `hybrid_loss` accumulated into the `.grad` of `optimizer`'s parameters
    (call `zero_grad` before and `step` after); returns the loss and the clean logits, both
    detached. With `generator="fgsm"` (the paper's) the clean pass's one backward gives both
    the clean parameter gradient (then scaled by `alpha`) and FGSM's input gradient, so a step
    costs ~2 forward+backward passes; the gradient equals `hybrid_loss`'s up to rounding.
    With `label_smoothing` > 0 FGSM takes its own pass (`hybrid_loss`): its input gradient is
    that of the unsmoothed CE, as for every attack."""
    if generator != "fgsm" or label_smoothing > 0:
        loss, logits = hybrid_loss(model, x, y, eps=eps, alpha=alpha, norm=norm,
                                   generator=generator, steps=steps, step_size=step_size,
                                   noise_mult=noise_mult, return_logits=True,
                                   label_smoothing=label_smoothing)
        loss.backward()
        return loss.detach(), logits
    xr = x.detach().requires_grad_(True)
    with training_pass_kernels(model, x):  # the input gradient's CPU kernels
        logits = differentiable_forward(model)(xr)
    ce_clean = F.cross_entropy(logits, y)
    ce_clean.backward()
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad.mul_(alpha)
    x_adv = fgsm(model, x, y, eps, norm, grad=xr.grad)
    ce_adv = F.cross_entropy(model(x_adv), y)
    (ce_adv * (1.0 - alpha)).backward()
    return hybrid_objective(alpha, ce_clean.detach(), ce_adv.detach()), logits.detach()


def next_alpha(alpha: float, clean_acc: float, adv_acc: float, *, ema: float = 0.0,
               low: float = 0.0, high: float = 1.0) -> float:
    """The weight after a measurement: the paper's `acc_adv / (acc_adv + acc_clean)`
    (`validation.adaptive_alpha`), smoothed with the previous `alpha` by `ema` (0: none) and
    clipped to [low, high]."""
    new = adaptive_alpha(clean_acc, adv_acc)
    if ema > 0:
        new = ema * alpha + (1.0 - ema) * new
    return min(high, max(low, new))


@dataclass
class HybridLoss:
    """The paper's hybrid objective with its state: `hybrid_loss` on the clean batch and its
    PGD-`steps` copy at the ramped budget eps_t (eps/10 -> eps, linear over `ramp` of
    `epochs`), with `a = acc_adv / (acc_adv + acc_clean)` set by `update` (`next_alpha`) from
    accuracies measured on held-out data (`alpha` before the first update)."""

    eps: float
    epochs: float
    norm: str = "linf"
    steps: int = 2
    ramp: float = 0.5
    alpha: float = 0.5
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        checks.check_number("HybridLoss eps", self.eps, 0.0)
        checks.check_number("HybridLoss epochs", self.epochs, 0.0, low_open=True)
        checks.check_number("HybridLoss ramp", self.ramp, 0.0, 1.0, low_open=True)
        checks.check_int("HybridLoss steps", self.steps, 1)
        checks.check_number("HybridLoss label_smoothing", self.label_smoothing, 0.0, 1.0,
                            high_open=True)

    def eps_at(self, progress: float) -> float:
        """The budget after `progress` epochs (a float: epoch + fraction of it)."""
        fraction = ramp_fraction(progress, self.ramp * self.epochs)
        return scheduled_eps("linear", self.eps, self.eps / 10, fraction)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, progress: float) -> Tensor:
        return hybrid_loss(model, x, y, eps=self.eps_at(progress), alpha=self.alpha,
                           norm=self.norm, steps=self.steps,
                           label_smoothing=self.label_smoothing)

    def update(self, clean_acc: float, adv_acc: float) -> float:
        """Set `alpha` from validation accuracies (fractions); returns the new value."""
        self.alpha = next_alpha(self.alpha, clean_acc, adv_acc)
        return self.alpha
