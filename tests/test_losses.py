"""The training objectives as plain functions (issue #16): used in a loop robustlab does not
own, on a model robustlab did not define, they train a model that resists PGD; the hybrid's
state follows the paper's formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.attacks import create_attack
from robustlab.data import load_dataset
from robustlab.training import HybridLoss, mart_loss, pgd_at_loss, trades_loss

EPS = 0.2


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16 * 14 * 14, 10))


@pytest.fixture(scope="module")
def mnist(mnist_root):
    return load_dataset("mnist", mnist_root)


def _train(mnist, objective, steps: int = 120) -> nn.Module:
    torch.manual_seed(0)
    model = _net()
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    for i in range(steps):
        x, y = mnist.train.x[i * 64:(i + 1) * 64], mnist.train.y[i * 64:(i + 1) * 64]
        loss = objective(model, x, y, i / steps)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _accs(model, mnist) -> tuple[float, float]:
    x, y = mnist.test.x[:300], mnist.test.y[:300]
    x_adv = create_attack("pgd", eps=EPS, steps=20, seed=0)(model, x, y)
    with torch.no_grad():
        return ((model(x).argmax(1) == y).float().mean().item(),
                (model(x_adv).argmax(1) == y).float().mean().item())


@pytest.fixture(scope="module")
def standard_accs(mnist):
    return _accs(_train(mnist, lambda m, x, y, _: F.cross_entropy(m(x), y)), mnist)


@pytest.mark.parametrize("name", ["pgd-at", "trades", "mart", "hybrid"])
@pytest.mark.integration  # five training loops
def test_objective_in_a_plain_loop_trains_a_robust_model(mnist, standard_accs, name):
    hybrid = HybridLoss(eps=EPS, epochs=1, steps=3)
    objectives = {
        "pgd-at": lambda m, x, y, _: pgd_at_loss(m, x, y, eps=EPS, steps=3),
        "trades": lambda m, x, y, _: trades_loss(m, x, y, eps=EPS, steps=3, beta=3.0),
        "mart": lambda m, x, y, _: mart_loss(m, x, y, eps=EPS, steps=3),
        "hybrid": lambda m, x, y, p: hybrid(m, x, y, progress=p),
    }
    clean, robust = _accs(_train(mnist, objectives[name]), mnist)
    std_clean, std_robust = standard_accs
    assert clean > 0.75, (name, clean)
    assert robust > std_robust + 0.15, (name, robust, std_robust)


def test_losses_touch_no_parameter_grad_and_can_return_logits(mnist):
    torch.manual_seed(0)
    model = _net()
    x, y = mnist.train.x[:16], mnist.train.y[:16]
    for fn in (pgd_at_loss, trades_loss, mart_loss):
        loss, logits = fn(model, x, y, eps=EPS, steps=2, return_logits=True)
        assert loss.dim() == 0 and torch.isfinite(loss) and logits.shape == (16, 10)
        assert not logits.requires_grad
        assert all(p.grad is None for p in model.parameters())  # the attack left them alone
        assert all(p.requires_grad for p in model.parameters())


def test_hybrid_loss_follows_the_paper():
    hybrid = HybridLoss(eps=0.3, epochs=10, ramp=0.5)
    assert hybrid.eps_at(0) == pytest.approx(0.03)
    assert hybrid.eps_at(2.5) == pytest.approx(0.03 + 0.27 * 0.5)
    assert hybrid.eps_at(5) == hybrid.eps_at(9) == pytest.approx(0.3)
    assert hybrid.update(clean_acc=0.9, adv_acc=0.3) == pytest.approx(0.25)
    assert hybrid.update(0.0, 0.0) == 0.5
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    hybrid.alpha = 0.0  # all weight on the adversarial copy: clean-only loss must differ
    torch.manual_seed(1)
    adv_only = hybrid(model, x, y, progress=9)
    hybrid.alpha = 1.0
    torch.manual_seed(1)
    clean_only = hybrid(model, x, y, progress=9)
    assert clean_only.item() == pytest.approx(F.cross_entropy(model(x), y).item())
    assert adv_only.item() > clean_only.item()
    for bad in ({"epochs": 0}, {"ramp": 0}, {"eps": -1}, {"steps": 0}):
        with pytest.raises(ValueError, match=r"HybridLoss (epochs|ramp|eps|steps): expected"):
            HybridLoss(**{"eps": 0.3, "epochs": 5, **bad})
