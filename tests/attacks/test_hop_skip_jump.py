"""HopSkipJump (Chen et al. 2020, decision-based, l2 / linf): geometry, determinism, query
budget, the fixed-eps mode, bad options; and strength against ART's `HopSkipJump` at equal
query budgets on the same real-MNIST images (a small MLP defined here, not trained by
robustlab)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fitting import fit_briefly
from torch import nn

from robustlab.attacks import AttackError, create
from robustlab.attacks.norms import lp_norm

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _predicted(model, batch):
    """The tiny batch labelled with the model's own (eval-mode) predictions: every image
    starts correctly classified, so the attack has work to do."""
    x = batch[0]
    with torch.no_grad():
        return x, model.eval()(x).argmax(1)


@pytest.mark.parametrize("norm, eps", [("l2", 0.8), ("linf", 0.08)])
def test_points_in_ball_box_deterministic_queries_within_budget(tiny_model, tiny_batch, norm,
                                                                eps):
    x, y = _predicted(tiny_model, tiny_batch)
    attack = create("hop-skip-jump", eps=eps, norm=norm, max_queries=150, init_evals=10,
                    seed=2)
    a = attack(tiny_model, x, y)
    assert bool((lp_norm(a - x, norm) <= eps + 1e-5).all())
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    q = attack.last_queries
    assert q.shape == (len(x),) and bool((q >= 1).all()) and bool((q <= 150).all())
    dist = attack.last_distances  # adversarial where finite: within eps means broken
    with torch.no_grad():
        broken = tiny_model.eval()(a).argmax(1) != y
    assert bool(broken[dist <= eps].all())
    b = create("hop-skip-jump", eps=eps, norm=norm, max_queries=150, init_evals=10,
               seed=2)(tiny_model, x, y)
    assert torch.equal(a, b)


def test_fixed_eps_stops_early_and_the_free_mode_spends_the_budget(tiny_model, tiny_batch):
    x, y = _predicted(tiny_model, tiny_batch)
    fixed = create("hop-skip-jump", eps=1.0, norm="l2", max_queries=300, init_evals=10)
    fixed(tiny_model, x, y)
    free = create("hop-skip-jump", eps=1.0, norm="l2", max_queries=300, init_evals=10,
                  fixed_eps=False)
    free(tiny_model, x, y)
    assert int(fixed.last_queries.sum()) < int(free.last_queries.sum())
    assert bool((free.last_queries <= 300).all())
    found = torch.isfinite(free.last_distances)
    # spending the whole budget only brings the boundary point nearer
    assert bool((free.last_distances[found] <= fixed.last_distances[found] + 1e-6).all())


@pytest.mark.parametrize("kwargs, match", [
    ({"norm": "l0"}, "hop-skip-jump.norm: expected one of linf, l2, got 'l0'"),
    ({"max_queries": 0}, "hop-skip-jump.max_queries"),
    ({"steps": 0}, "hop-skip-jump.steps"),
    ({"gamma": 0.0}, "hop-skip-jump.gamma"),
    ({"fixed_eps": "yes"}, "hop-skip-jump.fixed_eps"),
])
def test_bad_options_are_one_line(kwargs, match):
    with pytest.raises(AttackError, match=match) as err:
        create("hop-skip-jump", eps=0.1, **kwargs)
    assert "\n" not in str(err.value)


def test_targets_are_refused(tiny_model, tiny_batch):
    x, y = _predicted(tiny_model, tiny_batch)
    with pytest.raises(AttackError, match="target: HopSkipJump is untargeted only"):
        create("hop-skip-jump", eps=0.1)(tiny_model, x, y, target=(y + 1) % 5)


# ------------------------------------------------------------------ against ART
class _Counting(nn.Module):
    """The model as ART sees it: float32 inputs, every row it is asked about counted."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x):
        self.rows += len(x)
        return self.net(x.float())


@pytest.fixture(scope="module")
def mnist_mlp(mnist_splits):
    """A small MLP fitted for one pass over 3,000 real MNIST training images; 20 test images
    it classifies correctly."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    fit_briefly(net, mnist_splits.train.x[:3000], mnist_splits.train.y[:3000], lr=3e-3, seed=0)
    x, y = mnist_splits.test.x[:60], mnist_splits.test.y[:60]
    with torch.no_grad():
        ok = net(x).argmax(1) == y
    return net.eval(), x[ok][:20].clone(), y[ok][:20].clone()


def _art_success(net, x, y, norm, eps, seed) -> tuple[float, int]:
    """(ART's success rate within eps, its median queries per image) for 5 iterations of
    ART's HopSkipJump, image by image."""
    from art.attacks.evasion import HopSkipJump as ArtHopSkipJump
    from art.estimators.classification import PyTorchClassifier

    counting = _Counting(net)
    clf = PyTorchClassifier(counting, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                            nb_classes=10, clip_values=(0.0, 1.0))
    np.random.seed(seed)  # ART draws from numpy's global generator
    art = ArtHopSkipJump(clf, norm=2 if norm == "l2" else np.inf, max_iter=5, max_eval=10000,
                         init_eval=100, init_size=100, verbose=False)
    outs, used = [], []
    for i in range(len(x)):
        counting.rows = 0
        outs.append(torch.from_numpy(art.generate(x[i : i + 1].numpy())).float())
        used.append(counting.rows)
    adv = torch.cat(outs)
    with torch.no_grad():
        broken = net(adv).argmax(1) != y
    within = lp_norm(adv - x, norm) <= eps + 1e-6
    return (broken & within).float().mean().item(), int(np.median(used))


@pytest.mark.reference
@pytest.mark.parametrize("norm, eps", [("l2", 1.5), ("linf", 0.1)])
def test_success_rate_at_least_arts_at_equal_queries(mnist_mlp, norm, eps):
    """Mean over 3 seeds on the same 20 images, ours capped at ART's median queries per image
    (ART spends about the same on every image: 917-918 l2, 942-945 linf). Measured: l2 eps
    1.5 ours 0.27 vs ART 0.20, linf eps 0.1 ours 0.23 vs ART 0.10. Tolerance one image in 20
    (0.05) for seed noise: ART's own success varies by up to 0.10 between seeds here."""
    net, x, y = mnist_mlp
    ours, theirs = [], []
    for seed in range(3):
        art_rate, budget = _art_success(net, x, y, norm, eps, seed)
        attack = create("hop-skip-jump", eps=eps, norm=norm, max_queries=budget, seed=seed)
        adv = attack(net, x, y)
        assert int(attack.last_queries.max()) <= budget
        with torch.no_grad():
            ours.append((net(adv).argmax(1) != y).float().mean().item())
        theirs.append(art_rate)
    assert np.mean(ours) >= np.mean(theirs) - 0.05, (ours, theirs)
