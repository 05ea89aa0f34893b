"""GradAlign (Andriushchenko & Flammarion, NeurIPS 2020, "Understanding and Improving Fast
Adversarial Training"; code: github.com/tml-epfl/understanding-fast-adv-training).

Catastrophic overfitting of single-step training comes with the input gradient losing its
direction inside the eps-ball: the gradient at x and at a random point of the ball stop being
aligned, so one FGSM step no longer finds the ball's worst point. GradAlign penalises that:

    reg = lam * mean_i (1 - cos(g_i(x), g_i(x + eta)))      g_i(z) = grad_z CE(f(z_i), y_i)

`eta` is drawn from the ball of the step's budget (linf: uniform in [-eps, eps]^d; l2:
`attacks.norms.random_in_ball`, a Gaussian direction at radius eps * U, the library's l2 random
start). As in the authors' code: `x + eta` is NOT clipped to [0, 1] (`get_input_grad` forwards
`X + delta`), the gradient at `x` is a constant (detached, the README's `backprop=False`), the
one at `x + eta` is differentiated through (`create_graph=True`: double backpropagation), the
cosine is per image over the flattened gradient, and images where either gradient is exactly
zero do not count in the batch mean (`train.py`'s `grads_nnz_idx`; no image left: 0).

Cost per step: one extra forward+backward for g(x) (frozen parameters, the CPU kernels allowed),
one forward+backward with `create_graph` for g(x + eta), and the backward of the penalty through
that graph (roughly two more passes): ~3x an FGSM step's passes, more in time (on LeNet-5 on
the CPU epochs took several times longer: docs/training.md). The double backward cannot
run under `robustlab.accel.cpu_kernels` (their backward is once-differentiable), so a method with
`grad_align > 0` trains without them (like `gradient-reg`), and these functions refuse to run
inside them.

    loss = pgd_at_loss(model, x, y, eps=0.3, generator="fgsm-rs")
    loss = loss + grad_align_loss(model, x, y, eps=0.3, lam=0.5)   # then loss.backward()

The option `grad_align` (lam) of `pgd-at` / `fgsm-rs` / `n-fgsm` and the hybrid family adds it
to their training loss at the step's budget (the eps warm-up / the hybrid's ramp).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.accel.cpu_kernels import CPUKernels
from robustlab.attacks.norms import random_in_ball
from robustlab.common.options import Option
from robustlab.training.methods.perturb import differentiable_forward, input_grad


def grad_align_options() -> dict[str, Option]:
    """The option shared by the pgd-at and hybrid families."""
    return {
        "grad_align": Option(0.0, "float", "GradAlign weight lambda (0: off): + lambda x (1 - "
                             "cos(grad_x CE at x, at x + uniform eta in the eps-ball)), by "
                             "double backprop; for single-step generators (docs/training.md)",
                             low=0.0),
    }


def _cosine_gap(g1: Tensor, g2: Tensor) -> Tensor:
    """Batch mean of `1 - cos` between the rows of `g1` (constant) and `g2` `[N, D]`, over the
    rows where neither is zero (below the smallest normal float; 0 if no row is left).

    `g2` is first divided by its own norm taken as a constant: the cosine is scale-invariant,
    so value and gradient are unchanged, but the backward then never squares a tiny norm (a
    confidently classified image's gradient can be ~1e-30, whose square underflows to 0 and
    would make the gradient inf/NaN). Dropped rows are replaced by ones before any division."""
    tiny = torch.finfo(g2.dtype).tiny
    n1, n2 = g1.norm(dim=1), g2.detach().norm(dim=1)
    keep = (n1 > tiny) & (n2 > tiny)
    one = torch.ones_like(n2)
    u1 = g1 / torch.where(keep, n1, one)[:, None]
    v2 = torch.where(keep[:, None], g2 / torch.where(keep, n2, one)[:, None],
                     torch.ones_like(g2))
    cos = (u1 * v2).sum(1) / v2.norm(dim=1)
    kept = keep.to(g2.dtype)
    return ((1.0 - cos) * kept).sum() / kept.sum().clamp_min(1.0)


def grad_align_loss(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, lam: float = 1.0,
                    norm: str = "linf", clean_grad: Tensor | None = None) -> Tensor:
    """`lam * mean_i (1 - cos(grad_x CE(f(x_i), y_i), grad_x CE(f(x_i + eta_i), y_i)))` (the
    module docstring): a scalar with a graph through the model's parameters (double
    backpropagation) via the second gradient only. `clean_grad` (the input gradient at `x`, any
    positive scaling per image) skips computing the first when the caller has it. `eta` comes
    from torch's global RNG. Not under `CPUKernels`."""
    if CPUKernels.active():
        raise RuntimeError("grad_align_loss: double backpropagation cannot run under "
                           "robustlab.accel.cpu_kernels.CPUKernels (once-differentiable "
                           "backward); call it outside that mode")
    g1 = (input_grad(model, x, y) if clean_grad is None else clean_grad.detach())
    g1 = g1.reshape(len(x), -1)  # a constant (the authors' backprop=False)
    eta = random_in_ball(x, eps, norm, None)
    xr = (x.detach() + eta).requires_grad_(True)  # not clipped to [0, 1] (the authors')
    ce = F.cross_entropy(differentiable_forward(model)(xr), y, reduction="sum")
    (g2,) = torch.autograd.grad(ce, xr, create_graph=True)
    return lam * _cosine_gap(g1, g2.reshape(len(x), -1))


def grad_align_backward(model: nn.Module, x: Tensor, y: Tensor, *, eps: float, lam: float,
                        norm: str = "linf") -> Tensor:
    """`grad_align_loss`'s gradient ADDED to the parameters' `.grad` (for a method that does
    its own backward, e.g. `losses.hybrid_backward`: call this after it, since that one scales
    the gradient it finds); returns the penalty, detached."""
    reg = grad_align_loss(model, x, y, eps=eps, lam=lam, norm=norm)
    reg.backward()
    return reg.detach()
