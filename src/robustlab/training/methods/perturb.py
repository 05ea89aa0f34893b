"""Fast adversarial perturbations for use *inside* training steps.

Unlike the evaluation attacks in `robustlab.attacks`, these functions keep no best iterate, do
no input validation and no mode switching: they are the lean inner loop of adversarial
training. Every gradient is taken with `torch.autograd.grad` w.r.t. the input only, so the
parameters' `.grad` are never touched; `input_gradient_mode` freezes the parameters for that
pass (no weight-gradient kernels) and, on the CPU, runs it under the attacks' `CPUKernels`
(equal values, faster 1-channel convolution, 2x2 max-pool and ReLU; bench/method_speed.py).
Randomness comes from torch's global RNG, which the training loop reseeds at every epoch start
(so a resumed run draws the same numbers).

Shapes: `x` `[N, C, H, W]` float in [0, 1], `y` `[N]` int64. `eps`, `step` and `noise` are
Python floats in pixel units (radius of the `norm` ball). Every function returns `x_adv`
detached, same shape as `x`, in [0, 1]; all but `n_fgsm` also stay in the eps-ball around `x`.

At `norm="l1"` (the L1 ball ∩ [0, 1]^d of Croce & Hein 2021) two generators exist
(`L1_GENERATORS`): `pgd` is `l1_apgd`, the training form of APGD-L1 (Croce & Hein's own
L1 adversarial training): the sparse steepest-ascent direction (the signs of the `topk`
largest gradient coordinates, unit L1 norm; `attacks/l1.py`), the exact projection onto the
ball ∩ box, step eps adapted with the sparsity at APGD-L1's checkpoints
(`attacks/apgd.py`), topk starting at 0.05 (their training value; 0.2 when evaluating), and
the highest-loss iterate returned; `fgsm` is one such sparse step of size eps. `fgsm-rs` and
`n-fgsm` have no L1 version (their uniform noise balls are Linf / L2 ones).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.accel.cpu_kernels import CPUKernels
from robustlab.attacks.apgd import L1_CHECK_FRACTION, l1_checkpoint
from robustlab.attacks.execution import frozen_parameters
from robustlab.attacks.l1 import l1_sparse_direction, project_l1_box
from robustlab.attacks.norms import (
    eps_view,
    layout_of,
    project,
    random_in_ball,
    steepest_direction,
)
from robustlab.training.distributed import unwrap

GENERATORS: tuple[str, ...] = ("fgsm", "fgsm-rs", "n-fgsm", "pgd")
L1_GENERATORS: tuple[str, ...] = ("fgsm", "pgd")  # the generators with an L1 version
# the fraction of coordinates of the first sparse L1 steps in training (Croce & Hein's
# `apgd_train`; APGD-L1 starts evaluations at 0.2, attacks/apgd.py L1_TOPK_START)
L1_TRAIN_TOPK = 0.05


def differentiable_forward(model: nn.Module):
    """The forward to differentiate w.r.t. the input: a model behind a non-differentiable
    preprocessing defense (`nondifferentiable = True`) is differentiated through its
    `bpda_forward` (BPDA, as the evaluation attacks do); its value and parameter gradients are
    those of the real forward. (A DDP wrapper hides the flag: under DDP, use `unwrap` first.)"""
    return model.bpda_forward if getattr(model, "nondifferentiable", False) else model


def input_gradient_mode(model: nn.Module, x: Tensor) -> ExitStack:
    """Context for a pass that differentiates w.r.t. the input `x` only: the parameters of the
    (unwrapped) `model` frozen, and `CPUKernels` on for CPU inputs of models it can speed up
    (not `torch.compile`d ones). The parameters' `requires_grad` is restored on exit."""
    stack = ExitStack()
    stack.enter_context(frozen_parameters(unwrap(model)))
    stack.enter_context(training_pass_kernels(model, x))
    return stack


def training_pass_kernels(model: nn.Module, x: Tensor) -> AbstractContextManager:
    """Context for training passes on the batch `x` (the loop's whole step for methods with
    `cpu_kernels`, the FGSM hybrid's shared clean pass): `CPUKernels` on CPU inputs of models
    it can speed up (not `torch.compile`d ones), parameters left as they are (the convolution
    rule takes their gradients from ATen); nothing if one is on already."""
    net = unwrap(model)
    return CPUKernels.when(x.device.type == "cpu" and not hasattr(net, "_orig_mod")
                           and CPUKernels.may_apply(net))


def input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Gradient of the summed cross-entropy w.r.t. `x` (per-sample gradients, unscaled)."""
    forward = differentiable_forward(unwrap(model))
    xr = x.detach().requires_grad_(True)
    with input_gradient_mode(model, x):
        loss = F.cross_entropy(forward(xr), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, xr)
    return grad


def loss_and_grad(model: nn.Module, x: Tensor, y: Tensor, *, need_grad: bool = True
                  ) -> tuple[Tensor, Tensor | None]:
    """Per-sample cross-entropy `[N]` at `x` (detached) and its input gradient (None
    without `need_grad`: one forward pass only)."""
    forward = differentiable_forward(unwrap(model))
    xr = x.detach().requires_grad_(need_grad)
    with input_gradient_mode(model, x), torch.set_grad_enabled(need_grad):
        loss = F.cross_entropy(forward(xr), y, reduction="none")
        grad = torch.autograd.grad(loss.sum(), xr)[0] if need_grad else None
    return loss.detach(), grad


def l1_direction(grad: Tensor, topk: float = L1_TRAIN_TOPK) -> Tensor:
    """The sparse L1 steepest-ascent direction (unit L1 norm) over the `topk` fraction of the
    largest-magnitude coordinates of `grad` (`attacks/l1.l1_sparse_direction`)."""
    return l1_sparse_direction(grad, grad.new_full((grad.shape[0],), topk))


def l1_project(x: Tensor, v: Tensor, eps: float | Tensor) -> Tensor:
    """`v` projected onto the L1 ball of radius `eps` around `x` ∩ [0, 1]^d (exact,
    `attacks/l1.project_l1_box`), in `x`'s memory layout."""
    return project_l1_box(x, v, eps).contiguous(memory_format=layout_of(x))


def l1_apgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, steps: int,
            random_start: bool = False) -> Tensor:
    """APGD-L1 for training (module docstring): from `x` (or, with `random_start`, from
    `x + t`, t standard Gaussian, projected onto the ball ∩ box as APGD-L1 starts), `steps`
    sparse steps; returns the highest-loss iterate (x itself if no step raised the loss)."""
    x = x.detach()
    xa = l1_project(x, x + torch.randn_like(x), eps) if random_start else x
    loss, grad = loss_and_grad(model, xa, y)
    e0 = x.new_full((x.shape[0],), eps)
    st = {"x0": x, "e0": e0, "xa": xa, "grad": grad, "x_max": xa, "grad_max": grad,
          "loss_max": loss, "step": e0.clone(), "topk": torch.full_like(e0, L1_TRAIN_TOPK),
          "sp_old": torch.full_like(e0, float(x[0].numel()))}
    every = max(int(L1_CHECK_FRACTION * steps), 1)
    for i in range(steps):
        move = eps_view(st["step"], x) * l1_sparse_direction(st["grad"], st["topk"])
        x_new = l1_project(x, st["xa"] + move, e0)
        last = i == steps - 1  # its gradient would never be used
        loss, grad = loss_and_grad(model, x_new, y, need_grad=not last)
        if last:
            return torch.where(eps_view(loss > st["loss_max"], x), x_new, st["x_max"])
        st["xa"], st["grad"] = x_new, grad
        better = eps_view(loss > st["loss_max"], x)
        st["x_max"] = torch.where(better, x_new, st["x_max"])
        st["grad_max"] = torch.where(better, grad, st["grad_max"])
        st["loss_max"] = torch.maximum(loss, st["loss_max"])
        if (i + 1) % every == 0:  # APGD-L1's sparsity and step adaptation
            l1_checkpoint(st, x[0].numel())
    return st["x_max"]


def ball_project(delta: Tensor, eps: float, norm: str) -> Tensor:
    """Project `delta` onto the `norm` ball of radius `eps` (a float)."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return project(delta, eps, norm)


def step_from(x: Tensor, x_cur: Tensor, grad: Tensor, step: float, eps: float, norm: str) -> Tensor:
    """One projected steepest-ascent step from `x_cur`: back into the eps-ball around `x`, then
    into [0, 1]."""
    delta = x_cur + step * steepest_direction(grad, norm) - x
    return (x + ball_project(delta, eps, norm)).clamp_(0.0, 1.0)


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str, *,
         grad: Tensor | None = None) -> Tensor:
    """FGSM (Goodfellow et al. 2015): `x + eps * direction(grad)`, clipped to [0, 1].

    `grad` (the input gradient at `x`, any positive scaling) skips the gradient computation
    when the caller already has it (the hybrid method's shared backward pass).
    """
    if grad is None:
        grad = input_grad(model, x, y)
    if norm == "l1":  # one sparse step, onto the ball ∩ box (exact in float arithmetic)
        return l1_project(x, x + eps * l1_direction(grad), eps).detach()
    return (x + eps * steepest_direction(grad, norm)).clamp_(0.0, 1.0).detach()


def fgsm_rs(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str, *,
            step: float) -> Tensor:
    """FGSM with a uniform random start in the eps-ball (Wong et al. 2020; step 1.25 eps)."""
    x0 = (x + random_in_ball(x, eps, norm, None)).clamp_(0.0, 1.0)
    return step_from(x, x0, input_grad(model, x0, y), step, eps, norm).detach()


def n_fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str, *,
           step: float, noise: float) -> Tensor:
    """N-FGSM (de Jorge et al. 2022): noise from the ball of radius `noise` (2 eps by default),
    one step of size `step` (eps by default), NO projection back onto the eps-ball (the
    perturbation may reach `noise + step`); only clipped to [0, 1]."""
    x0 = (x + random_in_ball(x, noise, norm, None)).clamp_(0.0, 1.0)
    grad = input_grad(model, x0, y)
    return (x0 + step * steepest_direction(grad, norm)).clamp_(0.0, 1.0).detach()


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str, *, steps: int,
        step: float, random_start: bool = True) -> Tensor:
    """PGD-`steps` with cross-entropy (Madry et al. 2018): the LAST iterate (no best-iterate
    tracking), optionally from a uniform random start in the ball."""
    x_adv = x.detach()
    if random_start:
        x_adv = (x + random_in_ball(x, eps, norm, None)).clamp_(0.0, 1.0)
    if norm == "linf":  # the ball ∩ [0, 1] as one box: a step is add + clamp (fewer passes)
        lo, hi = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
        for _ in range(steps):
            x_adv = torch.clamp(x_adv + step * input_grad(model, x_adv, y).sign_(), lo, hi)
        return x_adv.detach()
    for _ in range(steps):
        x_adv = step_from(x, x_adv, input_grad(model, x_adv, y), step, eps, norm)
    return x_adv.detach()


def default_step(generator: str, eps: float, steps: int) -> float:
    """The standard step size of each generator for budget `eps`: fgsm eps, fgsm-rs 1.25 eps
    (Wong et al.), n-fgsm eps (de Jorge et al.), pgd 2.5 eps / steps (Madry et al.)."""
    scale = {"fgsm": 1.0, "fgsm-rs": 1.25, "n-fgsm": 1.0, "pgd": 2.5 / steps}[generator]
    return scale * eps


def generate(generator: str, model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str, *,
             steps: int = 10, step: float | None = None, noise_mult: float = 2.0,
             random_start: bool = True) -> Tensor:
    """Dispatch to one of `GENERATORS` at budget `eps`; `step=None` uses `default_step`,
    `noise_mult` is N-FGSM's noise radius in multiples of eps. At l1: `L1_GENERATORS` only
    (`pgd` is `l1_apgd`, which adapts its own step; `step` must be None)."""
    if norm == "l1":
        if generator not in L1_GENERATORS or step is not None:
            raise ValueError(f"generator: {generator!r} (step {step}) has no L1 version; "
                             f"expected one of {', '.join(L1_GENERATORS)} with step None")
        if generator == "fgsm":
            return fgsm(model, x, y, eps, norm)
        return l1_apgd(model, x, y, eps, steps=steps, random_start=random_start)
    if step is None:
        step = default_step(generator, eps, steps)
    if generator == "fgsm":
        return fgsm(model, x, y, eps, norm)
    if generator == "fgsm-rs":
        return fgsm_rs(model, x, y, eps, norm, step=step)
    if generator == "n-fgsm":
        return n_fgsm(model, x, y, eps, norm, step=step, noise=noise_mult * eps)
    if generator == "pgd":
        return pgd(model, x, y, eps, norm, steps=steps, step=step, random_start=random_start)
    raise ValueError(f"generator: unknown {generator!r}; expected one of {', '.join(GENERATORS)}")
