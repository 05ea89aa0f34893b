"""A gradient-masked model for the black-box checks: `Masked(net)` puts `net` behind an
identity whose backward pass returns zeros (a custom autograd function), so every input
gradient is 0 while the decisions are `net`'s. Gradient attacks (PGD) see no signal; score-
and decision-based attacks (SPSA, HopSkipJump, Square) are unaffected. Used by
bench/black_box_check.py and tests/attacks/test_spsa.py (loaded by path)."""

from __future__ import annotations

import torch
from torch import nn


class ZeroGrad(torch.autograd.Function):
    """Identity forward, zero backward: every input gradient through it is 0."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad)


class Masked(nn.Module):
    """`net` behind a zero-gradient identity: the same decisions, no gradient signal."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(ZeroGrad.apply(x))
