"""BPDA / EOT: the adaptive-attack contract applies to every gradient attack."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab.attacks import BPDAWrapper, bpda, create_attack, input_gradient
from robustlab.attacks.losses import ce_loss


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 4) / 4  # zero gradient almost everywhere


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5)).eval()


def test_bpda_value_is_exact_and_gradient_is_the_approximation():
    x = torch.rand(6, 1, 8, 8, requires_grad=True)
    out = bpda(_quantize)(x)
    assert torch.equal(out, _quantize(x.detach()))
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(g, torch.ones_like(x))  # identity backward
    out2 = bpda(_quantize, lambda t: 3 * t)(x)
    (g2,) = torch.autograd.grad(out2.sum(), x)
    assert torch.allclose(g2, torch.full_like(x, 3.0))


def test_bpda_gradient_equals_classifier_gradient_at_the_preprocessed_point():
    clf = _classifier()
    model = BPDAWrapper(_quantize, clf)
    x = torch.rand(6, 1, 8, 8)
    y = torch.randint(0, 5, (6,))
    g = input_gradient(model, x, y, ce_loss, bpda=True)
    ref = input_gradient(clf, _quantize(x), y, ce_loss)
    assert torch.allclose(g.grad, ref.grad, atol=1e-6)
    naive = input_gradient(model, x, y, ce_loss, bpda=False)
    assert float(naive.grad.abs().max()) == 0.0


@pytest.mark.parametrize("name", ["pgd", "fgsm", "mifgsm", "apgd-ce", "cw-linf"])
def test_adaptive_attack_breaks_a_gradient_masking_defense(name):
    clf = _classifier()
    model = BPDAWrapper(_quantize, clf)
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # all correctly classified
    kw = {} if name == "fgsm" else {"steps": 20}
    naive = create_attack(name, eps=0.3, adaptive=False, **kw)(model, x, y)
    adaptive = create_attack(name, eps=0.3, **kw)(model, x, y)
    with torch.no_grad():
        acc_naive = (model(naive).argmax(1) == y).float().mean().item()
        acc_adaptive = (model(adaptive).argmax(1) == y).float().mean().item()
    # zero gradients: the naive attack does no better than its random start
    assert acc_adaptive <= 0.25
    assert acc_naive >= acc_adaptive + 0.4


class _NoisyModel(nn.Module):
    randomized = True

    def __init__(self):
        super().__init__()
        self.inner = _classifier()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x + 0.05 * torch.randn_like(x))


def test_eot_averages_over_eot_iter_passes():
    model = _NoisyModel()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 5, (8,))
    torch.manual_seed(0)
    create_attack("fgsm", eps=0.1, eot_iter=7)(model, x, y)
    adaptive_calls = model.calls
    model.calls = 0
    create_attack("fgsm", eps=0.1, adaptive=False)(model, x, y)
    assert adaptive_calls - model.calls == 6  # 7 gradient passes instead of 1
    model.calls = 0
    create_attack("fgsm", eps=0.1)(model, x, y)  # default eot_iter = 10
    assert model.calls - 1 == 10  # + 1 forward for the class-count probe

    g1 = input_gradient(model, x, y, ce_loss, eot_iter=200).grad
    g2 = input_gradient(model, x, y, ce_loss, eot_iter=200).grad
    single = input_gradient(model, x, y, ce_loss).grad
    # the EOT estimate is much less noisy than one sample
    assert (g1 - g2).norm() < 0.5 * (single - g1).norm()


def test_nondifferentiable_model_without_bpda_forward_is_an_error():
    clf = _classifier()
    clf.nondifferentiable = True
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="bpda_forward"):
        create_attack("pgd", eps=0.1)(clf, x, y)
