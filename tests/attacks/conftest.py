"""Fixtures shared by the attack tests: a tiny synthetic model and a LeNet-5 trained on real
MNIST in-process (seeded, nothing cached on disk)."""

from __future__ import annotations

import time

import pytest
import torch
from fitting import fit_briefly
from torch import nn

MNIST_TRAIN_SAMPLES = 30_000
MNIST_TEST_SAMPLES = 1_000


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


def _train_lenet(splits, seed: int = 0) -> nn.Module:
    from robustlab.models import create_model

    torch.manual_seed(seed)
    model = create_model("lenet5", **splits.info.model_kwargs())
    x, y = splits.train.x[:MNIST_TRAIN_SAMPLES], splits.train.y[:MNIST_TRAIN_SAMPLES]
    return fit_briefly(model, x, y, lr=2e-3, seed=seed)


@pytest.fixture(scope="session")
def mnist_lenet(mnist_root) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(LeNet-5 trained 1 epoch on 30k real MNIST images, in eval mode;
    x_test[:1000] `[1000, 1, 28, 28]`; y_test[:1000]). Test accuracy >= 97% (asserted)."""
    from robustlab.data import load_dataset

    t0 = time.perf_counter()
    splits = load_dataset("mnist", root=mnist_root)
    model = _train_lenet(splits)
    for p in model.parameters():
        p.requires_grad_(True)
    x, y = splits.test.x[:MNIST_TEST_SAMPLES], splits.test.y[:MNIST_TEST_SAMPLES]
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    print(f"\n[mnist_lenet] trained in {time.perf_counter() - t0:.1f}s, clean acc {acc:.4f}")
    assert acc >= 0.97, f"LeNet-5 fixture reached only {acc:.4f} test accuracy"
    return model, x, y
