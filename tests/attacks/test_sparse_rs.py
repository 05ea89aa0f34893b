"""Sparse-RS, L0 pixel-wise (attacks/sparse_rs.py): at most eps PIXELS changed (a pixel counts
once over its channels), in [0, 1], seeded, targeted, query counts, the authors' schedule, and
its strength on a small CNN (not robustlab's) fitted on real MNIST against a random k-pixel
search and Foolbox's PointwiseAttack at equal queries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fitting import fit_briefly
from torch import nn

from robustlab.attacks import AttackError, create_attack
from robustlab.attacks.norms import lp_norm
from robustlab.attacks.sparse_rs import p_schedule
from robustlab.evaluation import metrics as M
from robustlab.evaluation.settings import EvalSettings, EvalSettingsError


def _rgb_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def _rgb_batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(n, 3, 8, 8, generator=g)
    with torch.no_grad():
        y = _rgb_model()(x).argmax(1)  # clean-correct: every sample is attacked
    return x, y


@pytest.fixture(scope="module")
def mnist_cnn(mnist_splits):
    """A small CNN (defined here) fitted for one epoch on 2,000 real MNIST images, and 100 test
    images it classifies correctly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 5, stride=2),
                          nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    fit_briefly(model, mnist_splits.train.x[:2000], mnist_splits.train.y[:2000], lr=3e-3, seed=0)
    x, y = mnist_splits.test.x[:140], mnist_splits.test.y[:140]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return model, x[ok][:100].clone(), y[ok][:100].clone()


def _robust(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


# ------------------------------------------------------------------ the threat model
def test_at_most_k_pixels_change_counted_over_channels_and_in_the_box():
    x, y = _rgb_batch()
    k = torch.tensor([0.0, 1, 2, 3] * 4)
    attack = create_attack("sparse-rs", eps=k, n_queries=40, seed=1)
    x_adv = attack(_rgb_model(), x, y)
    pixels = lp_norm(x_adv - x, "l0")
    assert bool((pixels <= k).all()) and float(pixels.max()) == 3
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    coords = ((x_adv - x) != 0).flatten(1).sum(1)
    assert bool((coords > pixels).any())  # a changed pixel spans channels and counts once
    assert torch.equal(x_adv[k == 0], x[k == 0])
    assert M.lp_norms(x_adv - x)["l0"].tolist() == pixels.double().tolist()


def test_the_l0_projection_keeps_the_most_changed_pixels():
    """The base class's projection of an l0 attack: the eps largest pixels kept, bit-exactly."""
    x = torch.zeros(1, 3, 2, 2)
    x_adv = x.clone()
    x_adv[0, :, 0, 0], x_adv[0, 1, 0, 1], x_adv[0, 2, 1, 1] = 0.9, 0.5, 0.1
    attack = create_attack("sparse-rs", eps=2)
    out = attack._project(x, x_adv, torch.tensor([2.0]))
    assert torch.equal(out[0, :, 0], x_adv[0, :, 0]) and torch.equal(out[0, :, 1], x[0, :, 1])


def test_same_seed_same_output_other_seed_other_output():
    x, y = _rgb_batch()
    runs = [create_attack("sparse-rs", eps=2, n_queries=30, seed=s)(_rgb_model(), x, y)
            for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_targeted_reaches_its_target_when_it_succeeds():
    x, y = _rgb_batch()
    target = (y + 1) % 5
    model = _rgb_model()
    x_adv = create_attack("sparse-rs", eps=6, n_queries=150, seed=0)(model, x, y, target=target)
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    moved = pred != y
    assert int(moved.sum()) >= len(y) // 2
    assert torch.equal(pred[moved], target[moved])


def test_query_counts_are_recorded_and_within_budget():
    x, y = _rgb_batch()
    y = y.clone()
    y[0] = (y[0] + 1) % 5  # misclassified already: never queried
    attack = create_attack("sparse-rs", eps=1, n_queries=25, restarts=2, seed=0)
    x_adv = attack(_rgb_model(), x, y)
    q = attack.last_queries
    assert q.shape == (len(x),) and int(q[0]) == 0 and torch.equal(x_adv[0], x[0])
    assert int(q.max()) <= 2 * 25 and int(q[1:].min()) >= 1
    broken = ~_robust(_rgb_model(), x_adv, y)
    assert bool((q[broken][1:] < 2 * 25).all())
    one = create_attack("sparse-rs", eps=1, n_queries=25, seed=0)
    one(_rgb_model(), x, y)
    assert int(one.last_queries.max()) <= 25


def test_the_schedule_is_the_authors_piecewise_decay():
    """`p_selection` of rs_attacks.py for L0: p_init / 2, 4, 5, 6, 8, 10, 12, 15, 20 after 0,
    50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000 queries, rescaled to n_queries."""
    got = [p_schedule(0.3, it, 10000) for it in (0, 1, 50, 51, 201, 501, 1001, 2001, 4001,
                                                   6001, 8001, 9999)]
    want = [0.3, 0.15, 0.15, 0.075, 0.06, 0.05, 0.0375, 0.03, 0.025, 0.02, 0.015, 0.015]
    assert got == pytest.approx(want)
    assert p_schedule(0.3, 6, 1000) == pytest.approx(0.075)  # 60 of 10,000
    assert p_schedule(0.3, 900, 1000, constant=True) == pytest.approx(0.15)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"eps": 2.5}, "eps"),
    ({"eps": -1}, "eps"),
    ({"eps": torch.tensor([1.0, 1.5])}, "eps"),
    ({"eps": 3, "norm": "linf"}, "sparse-rs.norm"),
    ({"eps": 3, "p_init": 0.0}, "sparse-rs.p_init"),
    ({"eps": 3, "n_queries": 0}, "sparse-rs.n_queries"),
    ({"eps": 3, "constant_schedule": "yes"}, "sparse-rs.constant_schedule"),
])
def test_bad_options_fail_in_one_line(kwargs, field):
    with pytest.raises(AttackError) as err:
        create_attack("sparse-rs", **kwargs)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def test_non_image_inputs_fail_in_one_line():
    model = nn.Sequential(nn.Linear(6, 3))
    with pytest.raises(AttackError, match=r"^x: sparse-rs needs images"):
        create_attack("sparse-rs", eps=1)(model, torch.rand(4, 6), torch.zeros(4, dtype=torch.long))


def test_pgd_refuses_l0_and_an_l0_evaluation_needs_whole_pixels():
    with pytest.raises(AttackError, match=r"^pgd.norm: expected one of"):
        create_attack("pgd", eps=3, norm="l0")
    with pytest.raises(EvalSettingsError, match=r"^eps: expected a whole number of pixels"):
        EvalSettings(attacks=("sparse-rs",), eps=2.5, norm="l0").validate()
    EvalSettings(attacks=("sparse-rs",), eps=24.0, norm="l0", curve_attack=None,
                 audit=False).validate()


def test_evaluate_at_l0_reports_pixels_changed(tmp_path, mnist_root):
    """`robustlab evaluate --norm l0 --eps K --attacks sparse-rs --no-curve --no-audit` (the
    curve and the audit run PGD, which has no l0) reports l0 (pixels changed) beside l2 /
    linf."""
    from robustlab.cli import main

    (tmp_path / "m.py").write_text(
        "import torch\nfrom torch import nn\n\ndef make():\n    torch.manual_seed(0)\n"
        "    lin = nn.Linear(784, 10)\n    with torch.no_grad():\n"
        "        lin.weight.mul_(0.5)\n        lin.bias.zero_()\n        lin.bias[1] = 0.2\n"
        "    return nn.Sequential(nn.Flatten(), lin)\n")  # predicts 1 but barely: breakable
    out = tmp_path / "e.json"
    rc = main(["evaluate", "--model", f"{tmp_path / 'm.py'}:make", "--dataset", "mnist",
               "--data-dir", str(mnist_root), "--images", "40", "--norm", "l0", "--eps", "3",
               "--attacks", "sparse-rs", "--attack-opt", "sparse-rs.n_queries=20", "--out",
               str(out), "--device", "cpu", "--no-curve", "--no-audit"])
    assert rc in (0, None)
    data = json.loads(out.read_text())
    pert = data["attacks"]["sparse-rs"]["perturbation"]
    assert data["curve"]["points"] == [] and data["audit"]["skipped"]
    assert data["attacks"]["sparse-rs"]["success_rate"] > 0
    assert 1 <= pert["l0_median"] <= 3 and 1 <= pert["l0_mean"] <= 3


# ------------------------------------------------------------------ strength on real MNIST
def _random_k_pixels(model, x, y, k: int, queries: int, seed: int) -> torch.Tensor:
    """The baseline: `queries` independent draws of k random pixels set to 0 or 1 (salt and
    pepper); robust where none misclassifies."""
    g = torch.Generator().manual_seed(seed)
    robust = torch.ones(len(x), dtype=torch.bool)
    n, c, h, w = x.shape
    for _ in range(queries):
        pix = torch.rand(n, h * w, generator=g).argsort(1)[:, :k]
        vals = torch.randint(0, 2, (n, c, k), generator=g).float()
        xa = x.reshape(n, c, h * w).clone()
        xa.scatter_(2, pix[:, None].expand(n, c, k), vals)
        robust &= _robust(model, xa.reshape(x.shape), y)
    return robust


def test_stronger_than_random_k_pixel_search_at_equal_queries(mnist_cnn, one_thread):
    model, x, y = mnist_cnn
    x, y = x[:60], y[:60]
    k, q = 8, 60
    ours = [_robust(model, create_attack("sparse-rs", eps=k, n_queries=q, seed=s)(model, x, y),
                    y).float().mean().item() for s in range(3)]
    base = [_random_k_pixels(model, x, y, k, q, s).float().mean().item() for s in range(3)]
    assert np.mean(ours) <= np.mean(base) - 0.02, (ours, base)  # measured: 0.84 vs 0.90


class _Counted(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def _foolbox_pointwise(model, x, y, seed: int) -> tuple[torch.Tensor, int]:
    """Foolbox 3's PointwiseAttack (salt-and-pepper start, then pixels reset one by one while
    still adversarial): each image's pixels changed (inf where not fooled) and the forward
    passes it made (each over the whole batch, so an upper bound per image)."""
    fb = pytest.importorskip("foolbox")
    counted = _Counted(model).eval()
    fmodel = fb.PyTorchModel(counted, bounds=(0, 1))
    np.random.seed(seed)
    torch.manual_seed(seed)
    init = fb.attacks.SaltAndPepperNoiseAttack(steps=200)
    start = init.run(fmodel, x, fb.criteria.Misclassification(y))
    fooled = ~_robust(model, start, y)
    xs, ys = x[fooled], y[fooled]
    adv = fb.attacks.PointwiseAttack(l2_binary_search=False).run(
        fmodel, xs, fb.criteria.Misclassification(ys), starting_points=start[fooled])
    pixels = torch.full((len(x),), float("inf"))
    ok = ~_robust(model, adv, ys)
    pixels[fooled.nonzero()[:, 0][ok]] = lp_norm(adv - xs, "l0")[ok]
    return pixels, counted.calls


@pytest.mark.reference
def test_at_least_as_strong_as_foolbox_pointwise_at_equal_queries(mnist_cnn, one_thread):
    """Robust accuracy at k pixels <= Foolbox's PointwiseAttack's + 0.5 points, mean over 3
    seeds, Sparse-RS given no more queries per image than Foolbox's forward passes."""
    model, x, y = mnist_cnn
    x, y = x[:40], y[:40]
    k = 8
    ours, ref = [], []
    for seed in range(3):
        pixels, calls = _foolbox_pointwise(model, x, y, seed)
        ref.append((pixels > k).float().mean().item())
        attack = create_attack("sparse-rs", eps=k, n_queries=min(calls, 10000), seed=seed)
        ours.append(_robust(model, attack(model, x, y), y).float().mean().item())
    assert np.mean(ours) <= np.mean(ref) + 0.005, (ours, ref)


def test_l0_statistics_only_in_l0_evaluations_and_kept_by_a_resumed_one(tmp_path):
    """linf / l2 eval files keep their perturbation fields (no l0 keys); an l0 run's pixels
    changed survive the partial file of a killed evaluation."""
    from robustlab.evaluation.attack_runner import AttackOutcome, summarize_outcome
    from robustlab.evaluation.partial import PartialResults

    n = 4
    base = dict(robust=torch.tensor([False, True, False, True]),
                correct_adv=torch.zeros(n, dtype=torch.bool),
                conf=torch.full((n,), 0.5), l2=torch.ones(n), linf=torch.ones(n),
                raw_l2=torch.ones(n), raw_fooled=torch.ones(n, dtype=torch.bool), seconds=0.0)
    clean = torch.ones(n, dtype=torch.bool)
    old = summarize_outcome(AttackOutcome(**base), clean, 15)["perturbation"]
    assert set(old) == {"l2_mean", "l2_median", "linf_mean", "linf_median",
                        "unbounded_l2_median"}
    new = summarize_outcome(AttackOutcome(**base, l0=torch.tensor([3.0, 0, 5, 0])), clean, 15)
    assert new["perturbation"]["l0_mean"] == 4.0 and new["perturbation"]["l0_median"] == 4.0
    part = PartialResults(tmp_path / "p", "key")
    fields = {k: torch.zeros(2) for k in ("correct", "conf", "l2", "linf", "raw_l2",
                                          "raw_fooled")}
    part.put("sparse-rs", 0, {**fields, "l0": torch.tensor([2.0, 3.0])})
    again = PartialResults(tmp_path / "p", "key").get("sparse-rs", 0)
    assert again["l0"].tolist() == [2.0, 3.0]
