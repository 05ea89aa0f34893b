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
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.accel.cpu_kernels import CPUKernels
from robustlab.attacks.execution import frozen_parameters
from robustlab.attacks.norms import project, random_in_ball, steepest_direction
from robustlab.training.distributed import unwrap

GENERATORS: tuple[str, ...] = ("fgsm", "fgsm-rs", "n-fgsm", "pgd")


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
    `noise_mult` is N-FGSM's noise radius in multiples of eps."""
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
