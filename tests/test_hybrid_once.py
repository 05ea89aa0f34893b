"""The paper's hybrid loss is written once (issue #33, item 3): the registered hybrid methods and
the adversarial-only methods compute, to the bit, what the public loss functions of
`training/methods/losses.py` compute, and the methods' modules hold no loss formula of their own.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from test_methods_units import batch, fake_ctx, tiny_model
from torch import nn

from robustlab.training.methods import adversarial, create_method, hybrid, losses
from robustlab.training.methods.losses import (
    HybridLoss,
    hybrid_backward,
    hybrid_loss,
    next_alpha,
    pgd_at_loss,
)

EPS = 0.1


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name, generator", [("mix", "pgd"), ("mix", "n-fgsm"),
                                             ("hybrid-fixed-eps", "fgsm-rs")])
def test_the_hybrid_methods_step_is_hybrid_loss_to_the_bit(name, generator):
    x, y = batch()
    method = create_method(name, generator=generator, alpha=0.3)
    ctx = fake_ctx(x, y, eps=EPS, method=name)
    method.setup(ctx)
    method.start_epoch(ctx)
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    torch.manual_seed(5)
    out = method.train_step(model, optimizer, x, y, ctx)

    reference = tiny_model()
    torch.manual_seed(5)
    loss, logits = hybrid_loss(reference, x, y, eps=EPS, alpha=0.3, generator=generator,
                               return_logits=True)
    loss.backward()
    assert torch.equal(out.loss, loss.detach()) and torch.equal(out.logits, logits)
    assert all(torch.equal(a, b) for a, b in zip(_grads(model), _grads(reference), strict=True))


def test_the_fgsm_shared_backward_is_the_gradient_of_hybrid_loss():
    x, y = batch()
    model, reference = tiny_model(), tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    loss, logits = hybrid_backward(model, optimizer, x, y, eps=EPS, alpha=0.7, generator="fgsm")
    ref_loss, ref_logits = hybrid_loss(reference, x, y, eps=EPS, alpha=0.7, generator="fgsm",
                                       return_logits=True)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss.detach(), rtol=1e-6, atol=1e-7)
    assert torch.equal(logits, ref_logits) and not loss.requires_grad
    for a, b in zip(_grads(model), _grads(reference), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["pgd-at", "fgsm-rs", "n-fgsm"])
def test_the_adversarial_methods_loss_is_pgd_at_loss_to_the_bit(name):
    x, y = batch()
    method = create_method(name)
    ctx = fake_ctx(x, y, eps=EPS, method=name)
    method.setup(ctx)
    model = tiny_model()
    torch.manual_seed(5)
    out = method.loss(model, x, y, ctx)
    torch.manual_seed(5)
    generator = {"pgd-at": "pgd"}.get(name, name)
    loss, logits = pgd_at_loss(model, x, y, eps=EPS, steps=10, generator=generator,
                               return_logits=True)
    assert torch.equal(out.loss, loss) and torch.equal(out.logits, logits)


def test_hybrid_loss_state_uses_the_same_functions():
    x, y = batch()
    state = HybridLoss(eps=0.3, epochs=4, steps=3, alpha=0.25)
    model = tiny_model()
    torch.manual_seed(2)
    value = state(model, x, y, progress=1.3)
    torch.manual_seed(2)
    expected = hybrid_loss(model, x, y, eps=state.eps_at(1.3), alpha=0.25, steps=3)
    assert torch.equal(value, expected)
    assert state.update(0.8, 0.2) == next_alpha(0.25, 0.8, 0.2) == pytest.approx(0.2)
    # the method's smoothing and clipping: 0.5 * 0.2 + 0.5 * 0.5, then clipped to 0.3
    assert next_alpha(0.2, 0.5, 0.5, ema=0.5) == pytest.approx(0.35)
    assert next_alpha(0.2, 0.5, 0.5, ema=0.5, high=0.3) == 0.3
    assert next_alpha(0.9, 0.0, 0.0) == 0.5  # both accuracies 0: equal weights


def test_the_methods_modules_write_no_loss_of_their_own():
    for module in (hybrid, adversarial):
        source = inspect.getsource(module)
        assert "cross_entropy" not in source and "adaptive_alpha" not in source, module
    formula = inspect.getsource(losses.hybrid_objective)
    assert "(1.0 - alpha)" in formula
    assert inspect.getsource(losses).count("(1.0 - alpha) *") == 1
