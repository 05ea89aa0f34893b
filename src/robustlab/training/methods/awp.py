"""Adversarial weight perturbation (AWP; Wu, Xia & Wang 2020, "Adversarial Weight Perturbation
Helps Robust Generalization", NeurIPS; code github.com/csdongxian/AWP).

One training step with AWP, for a method that splits its loss into `adversarial_examples`
(x_adv at the current weights w) and `objective` (its loss at a fixed x_adv):

1. x_adv = method.adversarial_examples(model, x, y) at w;
2. g = the gradient w.r.t. the weights of method.objective(model, x, y, x_adv) at w (the
   authors take one SGD step of a proxy copy on minus that loss and keep the difference: the
   same direction; here it is computed directly, without a copy). Batch-norm running
   statistics (every buffer) are restored after this extra pass;
3. for every parameter with more than one dimension (conv / linear weights: the authors
   perturb only those, `len(w.size()) <= 1` is skipped, so biases and norm-layer scales are
   not), v_l = gamma * ||w_l|| * g_l / ||g_l||, and w += v;
4. the method's objective at (x, x_adv) with the perturbed weights, backward,
   optimizer.step();
5. v is taken back off exactly: w := w0 + (w_after_step - (w0 + v)), w0 the weights before
   step 3, i.e. w0 plus the optimizer's own update (with lr 0 the weights are bit-identical).

gamma (`TrainConfig.awp`) is the paper's: 0.01 for AT-AWP (PGD-AT), 0.005 for TRADES-AWP.
`TrainConfig.awp_warmup`: epochs of plain training before AWP starts (the authors' TRADES
script starts at its 10th of 200 epochs; AT-AWP starts at once). Cost: one extra forward +
backward of the objective per step (the attack, the expensive part, is not repeated).
Under several processes (DDP) g is summed over the ranks, so every rank perturbs alike.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.training.methods.perturb import unwrap

_TINY = 1e-20  # the authors' EPS: a zero gradient gives a zero perturbation


def awp_active(ctx: Any) -> bool:
    """Whether the step of `ctx` (a `TrainContext`) perturbs the weights: its config's `awp`
    > 0 and `ctx.progress` (epochs done) at least `awp_warmup`."""
    return _active(getattr(ctx, "cfg", None), getattr(ctx, "progress", 0.0))


def _active(cfg: Any, progress: float) -> bool:
    gamma = float(getattr(cfg, "awp", 0.0))
    return gamma > 0 and progress >= float(getattr(cfg, "awp_warmup", 0.0))


def awp_log(cfg: Any, progress: float) -> dict[str, bool]:
    """The epoch row's `awp_active` (whether the epoch's last step, at `progress`, perturbed the
    weights) for a run with AWP; nothing for a run without."""
    return {"awp_active": _active(cfg, progress)} if getattr(cfg, "awp", 0.0) else {}


def perturbed_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights AWP perturbs: trainable parameters with more than one dimension."""
    return [p for p in unwrap(model).parameters() if p.requires_grad and p.dim() > 1]


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Every buffer of `model` (batch-norm running statistics and counters) as it was before
    the block: a pass inside it leaves no trace in them."""
    saved = [(b, b.detach().clone()) for b in unwrap(model).buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def weight_perturbation(loss: Tensor, params: list[nn.Parameter], gamma: float,
                        dist: Any = None) -> list[Tensor]:
    """v_l = gamma * ||w_l|| * g_l / ||g_l|| for each of `params`, g = d loss / d w (summed
    over the ranks of `dist` when several)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    out = []
    for p, g in zip(params, grads, strict=True):
        g = torch.zeros_like(p) if g is None else g.detach()
        if dist is not None:
            dist.sum(g)
        out.append(g * (gamma * p.detach().norm() / (g.norm() + _TINY)))
    return out


def awp_step(method: Any, model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor,
             y: Tensor, ctx: Any, gamma: float) -> Any:
    """One optimizer step of `method` with adversarial weight perturbation of relative size
    `gamma` (steps 1-5 of the module docstring); returns the method's `BatchOutput` at the
    perturbed weights (its loss and logits)."""
    x_adv = method.adversarial_examples(model, x, y, ctx).detach()
    params = perturbed_parameters(model)
    plain = unwrap(model)  # the extra pass needs no gradient synchronisation
    with preserved_buffers(model):
        v = weight_perturbation(method.objective(plain, x, y, x_adv, ctx).loss, params, gamma,
                                ctx.dist if getattr(ctx.dist, "enabled", False) else None)
    w0 = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, d in zip(params, v, strict=True):
            p.add_(d)
    optimizer.zero_grad(set_to_none=True)
    out = method.objective(model, x, y, x_adv, ctx)
    out.loss.backward()
    optimizer.step()
    with torch.no_grad():
        for p, p0, d in zip(params, w0, v, strict=True):
            p.copy_(p0 + (p - (p0 + d)))
    return out
