"""Batched inference without autograd."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from robustlab.common.modes import eval_mode


def first_float_tensor(model: nn.Module) -> torch.Tensor | None:
    """The model's first floating-point parameter or buffer (None when it has none): what
    decides the dtype and device the model computes in."""
    return next((t for t in itertools.chain(model.parameters(), model.buffers())
                 if t.is_floating_point()), None)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits `[N, K]` of `model` on `x` `[N, C, H, W]`, computed in eval mode in batches.

    Every submodule's train/eval mode is restored afterwards.
    """
    with eval_mode(model):
        outs = [model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    if not outs:
        return torch.empty(0, 0)
    return torch.cat(outs).float()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Fraction in [0, 1] of `x` that `model` classifies as `y` (0.0 for an empty set)."""
    if len(x) == 0:
        return 0.0
    pred = predict_logits(model, x, batch_size).argmax(1)
    return (pred == y.to(pred.device)).sum().item() / len(y)
