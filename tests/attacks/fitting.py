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


def small_mnist_mlp(splits) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The L1 tests' plain PyTorch MLP robustlab did not train (784-64-10: 60 Adam steps of
    200 images over the first 2,000 training images of `splits`, seed 0; eval mode) and the
    first 100 test images (clean 0.91)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = splits.train.x[:2000], splits.train.y[:2000]
    for i in range(60):
        b = slice((i * 200) % 2000, (i * 200) % 2000 + 200)
        opt.zero_grad()
        F.cross_entropy(model(x[b]), y[b]).backward()
        opt.step()
    return model.eval(), splits.test.x[:100].clone(), splits.test.y[:100].clone()
