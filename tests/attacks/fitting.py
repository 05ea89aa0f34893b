"""Fit a model briefly on in-memory data (the attack tests' models; seeded, Adam)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fit_briefly(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, lr: float, seed: int,
                batch_size: int = 64) -> nn.Module:
    """One epoch of Adam over `x` `[N, C, H, W]`, `y` `[N]` in a seeded order; returns the
    model in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    model.train()
    for i in range(0, len(x), batch_size):
        b = perm[i : i + batch_size]
        loss = F.cross_entropy(model(x[b]), y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()
