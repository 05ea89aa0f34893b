"""SPSA (Uesato et al. 2018, linf, score-based): geometry, determinism, query counts, bad
options; and what it is for: on a model whose gradients are masked (a zero-gradient front end,
a custom autograd function) SPSA breaks images PGD cannot, and the audit's `gradient_free`
check flags that model while it passes on the same network unmasked."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from fitting import fit_briefly
from torch import nn

from robustlab.attacks import AttackError, create

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _predicted(model, batch):
    """The tiny batch labelled with the model's own (eval-mode) predictions: every image
    starts correctly classified, so the attack has work to do."""
    x = batch[0]
    with torch.no_grad():
        return x, model.eval()(x).argmax(1)

EPS = 0.15


def _bench_masking():
    """bench/masking.py (the gradient-masked wrapper the black-box bench uses), by path."""
    path = Path(__file__).resolve().parents[2] / "bench" / "masking.py"
    spec = importlib.util.spec_from_file_location("bench_masking", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Masked = _bench_masking().Masked  # `net` behind a zero-gradient identity


@pytest.fixture(scope="module")
def mnist_mlp(mnist_splits):
    """A small MLP fitted for one pass over 3,000 real MNIST training images, and 40 test
    images it classifies correctly."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    fit_briefly(net, mnist_splits.train.x[:3000], mnist_splits.train.y[:3000], lr=3e-3, seed=0)
    x, y = mnist_splits.test.x[:80], mnist_splits.test.y[:80]
    with torch.no_grad():
        ok = net(x).argmax(1) == y
    return net, x[ok][:40].clone(), y[ok][:40].clone()


def _success(model, x_adv, y) -> float:
    with torch.no_grad():
        return (model(x_adv).argmax(1) != y).float().mean().item()


def test_points_in_ball_box_deterministic_and_queries_counted(tiny_model, tiny_batch):
    x, y = _predicted(tiny_model, tiny_batch)
    attack = create("spsa", eps=0.1, steps=5, samples=8, seed=3)
    a = attack(tiny_model, x, y)
    assert float((a - x).abs().max()) <= 0.1 + 1e-6
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    q = attack.last_queries
    assert q.shape == (len(x),) and bool((q >= 1).all())
    assert bool((q <= 1 + 5 * (2 * 8 + 1)).all())
    assert bool(((q - 1) % (2 * 8 + 1) == 0).all())  # whole iterations only
    b = create("spsa", eps=0.1, steps=5, samples=8, seed=3)(tiny_model, x, y)
    assert torch.equal(a, b)
    c = create("spsa", eps=0.1, steps=5, samples=8, seed=4)(tiny_model, x, y)
    assert not torch.equal(a, c)


def test_spsa_breaks_a_gradient_masked_model_where_pgd_fails(mnist_mlp):
    net, x, y = mnist_mlp
    masked = Masked(net).eval()
    pgd = _success(masked, create("pgd", eps=EPS, steps=20)(masked, x, y), y)
    spsa = create("spsa", eps=EPS, steps=50, samples=32)
    s = _success(masked, spsa(masked, x, y), y)
    # measured: PGD 0.05 (only its random start moves; 1.00 on the unmasked net), SPSA 0.875
    # on these 40 images
    assert pgd <= 0.1 and s >= pgd + 0.5, (pgd, s)
    # the decisions are the plain net's: SPSA does as well on it as on the masked one
    assert _success(net, spsa(net, x, y), y) == pytest.approx(s)
    assert int(spsa.last_queries.max()) <= 1 + 50 * 65


def _audit(model, x, y, queries=200):
    from robustlab.evaluation import EvalSettings, evaluate_model

    settings = EvalSettings(attacks=("fgsm", "pgd"), eps=EPS, n=len(x), batch_size=len(x),
                            curve_attack=None, audit_n=len(x), audit_square_queries=queries,
                            adaptive=False)
    result = evaluate_model(model, x, y, settings)
    return result["audit"], {c["name"]: c for c in result["audit"]["checks"]}


def test_audit_gradient_free_check_flags_the_masked_model_only(mnist_mlp):
    net, x, y = mnist_mlp
    audit, by = _audit(Masked(net).eval(), x[:20], y[:20])
    c = by["gradient_free"]
    assert c["status"] == "flag" and "gradient_free" in audit["flags"]
    assert c["values"]["attack"] == "spsa" and c["values"]["acc"] < c["values"]["white_box"]
    # (200 - 1) // 33 steps; Adam rate 3 eps / steps
    assert c["values"]["options"] == {"samples": 16, "steps": 6, "lr": pytest.approx(0.075)}
    assert "masked gradients" in c["reason"]
    audit, by = _audit(net, x[:20], y[:20])
    assert by["gradient_free"]["status"] == "pass"
    assert "gradient_free" not in audit["flags"]


@pytest.mark.parametrize("kwargs, match", [
    ({"norm": "l2"}, "spsa.norm: expected one of linf, got 'l2'"),
    ({"steps": 0}, "spsa.steps"),
    ({"samples": 0}, "spsa.samples"),
    ({"delta": 0.0}, "spsa.delta"),
    ({"lr": -1.0}, "spsa.lr"),
    ({"delta": True}, "spsa.delta"),
])
def test_bad_options_are_one_line(kwargs, match):
    with pytest.raises(AttackError, match=match) as err:
        create("spsa", eps=0.1, **kwargs)
    assert "\n" not in str(err.value)
