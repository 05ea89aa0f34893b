"""Fixtures shared by the attack tests: a tiny synthetic model and batch. The LeNet-5 trained
on real MNIST (`mnist_lenet`) is tests/conftest.py's, built once per session for every test."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """conv4@3x3 -> ReLU -> BatchNorm -> linear; 5 classes on `[N, 1, 8, 8]` inputs.

    Has BatchNorm (so eval/train mode matters) and Dropout (so a wrong mode changes outputs).
    """

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 6 * 6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(torch.relu(self.conv(x)))
        return self.fc(self.drop(torch.flatten(h, 1)))


@pytest.fixture
def tiny_model() -> nn.Module:
    """A freshly initialised `TinyNet` (seeded) in TRAIN mode, with BatchNorm statistics
    that differ from their defaults (so putting it in the wrong mode changes the logits)."""
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    model.train()
    return model


@pytest.fixture
def tiny_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(x `[12, 1, 8, 8]` in [0, 1], y `[12]` int64 over 5 classes), seeded."""
    g = torch.Generator().manual_seed(1)
    return torch.rand(12, 1, 8, 8, generator=g), torch.randint(0, 5, (12,), generator=g)
