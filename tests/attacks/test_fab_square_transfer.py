"""FAB / FAB-T, Square (linf, l2) and the transfer attack: geometry, determinism, errors, and
strength on a LeNet-5 trained on real MNIST (fixture `mnist_lenet`, 1 epoch, >= 97% clean).

Thresholds were measured on that fixture (numbers in the comments) and carry a margin.
"""

from __future__ import annotations

import pytest
import torch
from fitting import fit_briefly
from torch import nn

from robustlab.attacks import AttackError, create
from robustlab.attacks.fab import boundary_step
from robustlab.attacks.norms import lp_norm
from robustlab.attacks.square import p_schedule, square_pattern

N_STRENGTH = 100  # test images used by the strength tests


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def assert_in_threat_model(x_adv, x, eps, norm, tol=1e-6):
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    eps_t = torch.as_tensor(eps, dtype=x.dtype).expand(x.shape[0])
    assert bool((lp_norm(x_adv - x, norm) <= eps_t + tol).all())


@pytest.fixture(scope="module")
def mnist_small(mnist_lenet):
    model, x, y = mnist_lenet
    return model, x[:N_STRENGTH], y[:N_STRENGTH]


@pytest.fixture(scope="module")
def surrogate(mnist_root) -> nn.Module:
    """A second LeNet-5 (different seed, different 10k training images) as transfer source."""
    from robustlab.data import load_dataset
    from robustlab.models import create_model

    splits = load_dataset("mnist", root=mnist_root)
    torch.manual_seed(1)
    model = create_model("lenet5", **splits.info.model_kwargs())
    x, y = splits.train.x[30_000:40_000], splits.train.y[30_000:40_000]
    return fit_briefly(model, x, y, lr=2e-3, seed=1)


# ------------------------------------------------------------------ FAB's projection step
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_boundary_step_is_the_minimal_norm_point_on_the_hyperplane_in_the_box(norm):
    g = torch.Generator().manual_seed(0)
    n, d = 64, 20
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    x[:, :4] = (x[:, :4] > 0.5).double()  # some coordinates on the box faces
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    w[:, 7] = 0.0
    c = torch.randn(n, generator=g, dtype=torch.float64)
    delta = boundary_step(x, w, c, norm)
    assert torch.allclose((w * delta).sum(1) + c, torch.zeros(n, dtype=torch.float64), atol=1e-9)
    assert bool(((x + delta) >= -1e-12).all() and ((x + delta) <= 1 + 1e-12).all())
    assert bool((delta[:, 7] == 0).all())
    # No other feasible point is shorter: random feasible points (projected along w within
    # the box) all have a norm >= the returned one.
    norm_d = lp_norm(delta, norm)
    for _ in range(200):
        z = torch.rand(n, d, generator=g, dtype=torch.float64)
        z = x + (z - x) * torch.rand(n, 1, generator=g, dtype=torch.float64)
        # move z onto the hyperplane along the coordinate with the largest room
        resid = (w * (z - x)).sum(1) + c
        j = w.abs().argmax(1)
        rows = torch.arange(n)
        z[rows, j] -= resid / w[rows, j]
        ok = ((z >= 0) & (z <= 1)).all(1)
        assert bool((lp_norm(z - x, norm)[ok] >= norm_d[ok] - 1e-9).all())


def test_boundary_step_known_values():
    x = torch.tensor([[0.5, 0.5, 0.9]])
    w = torch.tensor([[1.0, 1.0, 1.0]])
    # need w.d = 0.6; linf: each coordinate moves up by 0.2 but the third saturates at 0.1
    d = boundary_step(x, w, torch.tensor([-0.6]), "linf")
    assert torch.allclose(d, torch.tensor([[0.25, 0.25, 0.1]]), atol=1e-6)
    d = boundary_step(x, w, torch.tensor([-0.6]), "l2")
    assert torch.allclose(d, torch.tensor([[0.25, 0.25, 0.1]]), atol=1e-6)
    # infeasible in the box (w.d can reach at most 1.1): every coordinate to its face, the
    # box corner nearest to the hyperplane. The old unconstrained step [1, 1, 1] left the
    # box, and its norm set FAB's weight alpha: L2 FAB-T was 15 points weaker than the
    # authors' code on a Linf-trained CNN (docs/attacks.md)
    for norm in ("l2", "linf"):
        d = boundary_step(x, w, torch.tensor([-3.0]), norm)
        assert torch.allclose(d, torch.tensor([[0.5, 0.5, 0.1]]), atol=1e-6)
    w2 = torch.tensor([[-1.0, 0.0, 2.0]])  # the coordinate with w = 0 stays, w < 0 goes down
    d = boundary_step(x, w2, torch.tensor([-5.0]), "l2")
    assert torch.allclose(d, torch.tensor([[-0.5, 0.0, 0.1]]), atol=1e-6)


# ------------------------------------------------------------------------ Square pieces
def test_p_schedule_halves_at_the_original_breakpoints():
    assert p_schedule(0.8, 0, 10_000) == 0.8
    assert p_schedule(0.8, 11, 10_000) == 0.4
    assert p_schedule(0.8, 51, 10_000) == 0.2
    assert p_schedule(0.8, 8001, 10_000) == pytest.approx(0.8 / 512)
    assert p_schedule(0.8, 100, 1000) == pytest.approx(0.8 / 16)  # rescaled: 100/1000 -> 1000


def test_square_pattern_is_unit_norm_and_antisymmetric():
    for s in (3, 5, 6):
        p = square_pattern(s, torch.device("cpu"), torch.float32)
        assert p.shape == (s, s)
        assert abs(float(p.norm()) - 1.0) < 1e-6
        assert bool((p[: s // 2] > 0).all()) and bool((p[s // 2 :] < 0).all())


# ------------------------------------------------------------------------ strength tests
def test_square_linf_breaks_a_standard_lenet(mnist_small):
    model, x, y = mnist_small
    attack = create("square", eps=0.3, norm="linf", n_queries=500, seed=0)
    x_adv = attack(model, x, y)
    assert_in_threat_model(x_adv, x, 0.3, "linf")
    acc = accuracy(model, x_adv, y)
    assert acc <= 0.03, acc  # measured: 0.00
    # black box and frugal: a standard LeNet falls within a few dozen queries on average (22)
    assert attack.last_queries is not None and float(attack.last_queries.float().mean()) < 100


def test_square_l2_stays_in_the_l2_ball_and_reduces_accuracy(mnist_small):
    model, x, y = mnist_small
    x, y = x[:30], y[:30]
    eps = 2.0
    x_adv = create("square", eps=eps, norm="l2", n_queries=200, seed=0)(model, x, y)
    assert_in_threat_model(x_adv, x, eps, "l2", tol=1e-5)
    acc = accuracy(model, x_adv, y)
    assert acc <= 0.8, acc  # measured: 0.63 (clean 0.98)


def test_fab_t_linf_breaks_a_standard_lenet(mnist_small):
    model, x, y = mnist_small
    attack = create("fab-t", eps=0.3, norm="linf", steps=20, seed=0)
    x_adv = attack(model, x, y)
    assert_in_threat_model(x_adv, x, 0.3, "linf")
    acc = accuracy(model, x_adv, y)
    assert acc <= 0.03, acc  # measured: 0.00
    # FAB minimises the norm: the median distortion is far below eps
    changed = (x_adv != x).flatten(1).any(1)
    assert float(lp_norm(x_adv - x, "linf")[changed].median()) < 0.2  # measured: 0.096


def test_fab_l2_returns_minimal_adversarials_inside_the_ball(mnist_small):
    model, x, y = mnist_small
    x, y = x[:40], y[:40]
    eps = 1.5
    x_adv = create("fab", eps=eps, norm="l2", steps=20, seed=0)(model, x, y)
    assert_in_threat_model(x_adv, x, eps, "l2", tol=1e-5)
    changed = (x_adv != x).flatten(1).any(1)
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    # every changed point is adversarial (FAB returns the input when it found nothing)
    assert bool((pred[changed] != y[changed]).all())
    acc = accuracy(model, x_adv, y)
    assert acc <= 0.5, acc  # measured: 0.275


def test_transfer_weaker_than_white_box(mnist_small, surrogate):
    # FGSM as the crafting attack: PGD / MI-FGSM keep their FIRST adversarial iterate, which
    # barely crosses the surrogate's boundary and transfers poorly (measured on two LeNets:
    # PGD-10 at eps 0.3 leaves 91% accuracy on the target, FGSM 48%).
    model, x, y = mnist_small
    eps = 0.3
    white = accuracy(model, create("pgd", eps=eps, steps=10, seed=0)(model, x, y), y)
    x_tr = create("transfer", surrogate=surrogate, attack="fgsm", eps=eps)(model, x, y)
    assert_in_threat_model(x_tr, x, eps, "linf")
    transfer = accuracy(model, x_tr, y)
    clean = accuracy(model, x, y)
    assert transfer <= clean - 0.3, (clean, transfer)  # measured: clean 0.98, transfer 0.48
    assert white + 0.1 <= transfer, (white, transfer)  # measured: white-box 0.00


def test_pgd_transfer_crafts_highest_loss_points(mnist_small, surrogate):
    """The transfer attack's default PGD runs every step and keeps the highest-loss iterate
    (`stop_on_success=False`); the first-adversarial-iterate rule transfers far worse."""
    model, x, y = mnist_small
    eps = 0.3
    deep = create("transfer", surrogate=surrogate, attack="pgd", eps=eps, steps=10)(model, x, y)
    shallow = create("transfer", surrogate=surrogate, attack="pgd", eps=eps, steps=10,
                     stop_on_success=True)(model, x, y)
    assert_in_threat_model(deep, x, eps, "linf")
    acc_deep, acc_shallow = accuracy(model, deep, y), accuracy(model, shallow, y)
    print(f"\ntransfer PGD-10: highest-loss {acc_deep:.3f}, first-adversarial {acc_shallow:.3f}")
    assert acc_deep <= acc_shallow - 0.3, (acc_deep, acc_shallow)
    # the target's accuracy depends on how the two LeNets trained (0.32 on the package set of
    # 2026-12; lower when written): a strong transfer, well under half of the clean 0.97
    assert acc_deep <= 0.4, acc_deep


def test_mifgsm_transfer_also_crafts_highest_loss_points(mnist_small, surrogate):
    """MI-FGSM inside `transfer` gets the same default as PGD: every step, highest loss."""
    model, x, y = mnist_small
    eps = 0.3
    attack = create("transfer", surrogate=surrogate, attack="mifgsm", eps=eps, steps=10)
    assert attack.attack.stop_on_success is False
    deep = attack(model, x, y)
    shallow = create("transfer", surrogate=surrogate, attack="mifgsm", eps=eps, steps=10,
                     stop_on_success=True)(model, x, y)
    assert_in_threat_model(deep, x, eps, "linf")
    acc_deep, acc_shallow = accuracy(model, deep, y), accuracy(model, shallow, y)
    print(f"\ntransfer MI-FGSM-10: highest-loss {acc_deep:.3f}, first-adversarial "
          f"{acc_shallow:.3f}")
    assert acc_deep <= acc_shallow - 0.2, (acc_deep, acc_shallow)


def test_transfer_never_queries_the_target(mnist_small, surrogate):
    model, x, y = mnist_small
    calls = []

    class Spy(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, z):
            calls.append(z.shape[0])
            return self.inner(z)

    create("transfer", surrogate=surrogate, attack="fgsm", eps=0.1)(Spy(model), x[:8], y[:8])
    # the generic one-sample probe of the logits' width, then one pass on the CLEAN inputs
    # (after crafting) to keep the samples the target already gets wrong
    assert calls == [1, 8]


# ------------------------------------------------------- per-sample eps, seeds, targets
@pytest.mark.parametrize("name", ["square", "fab-t", "fab"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_per_sample_eps(mnist_small, name, norm):
    model, x, y = mnist_small
    x, y = x[:6], y[:6]
    big = 0.3 if norm == "linf" else 3.0
    eps = torch.tensor([0.0, big, big / 2, 0.0, big, big / 3])
    kw = {"n_queries": 50} if name == "square" else {"steps": 5, "n_target_classes": 2}
    if name == "fab":
        kw.pop("n_target_classes")
    x_adv = create(name, eps=eps, norm=norm, seed=0, **kw)(model, x, y)
    assert_in_threat_model(x_adv, x, eps, norm, tol=1e-5)
    assert torch.equal(x_adv[eps == 0], x[eps == 0])


@pytest.mark.parametrize(
    "name, kw",
    [
        ("square", {"n_queries": 40, "norm": "l2"}),
        ("square", {"n_queries": 40}),
        ("fab", {"steps": 5, "restarts": 2}),
    ],
)
def test_same_seed_same_output(mnist_small, name, kw):
    model, x, y = mnist_small
    x, y = x[:16], y[:16]
    eps = 0.05 if kw.get("norm", "linf") == "linf" else 0.5  # small: most points survive
    a = create(name, eps=eps, seed=3, **kw)(model, x, y)
    b = create(name, eps=eps, seed=3, **kw)(model, x, y)
    assert torch.equal(a, b)
    if name == "square":
        c = create(name, eps=eps, seed=4, **kw)(model, x, y)
        assert not torch.equal(a, c)


@pytest.mark.parametrize(
    "name, kw, floor",
    [("square", {"n_queries": 300}, 0.6), ("fab", {"steps": 20}, 0.6)],
)
def test_targeted_attacks_reach_the_target(mnist_small, name, kw, floor):
    model, x, y = mnist_small
    x, y = x[:20], y[:20]
    target = (y + 1) % 10
    x_adv = create(name, eps=0.3, seed=0, **kw)(model, x, y, target)
    assert_in_threat_model(x_adv, x, 0.3, "linf")
    with torch.no_grad():
        hit = (model(x_adv).argmax(1) == target).float().mean().item()
    assert hit >= floor, hit  # measured: square 0.85, fab 0.85


def test_fab_t_on_a_binary_model_equals_untargeted_fab():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    with torch.no_grad():  # put the decision boundary through the middle of the box
        model[1].bias -= model(torch.full((1, 1, 4, 4), 0.5))[0]
    x = torch.rand(10, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    targeted = create("fab-t", eps=4.0, norm="l2", steps=10)(model, x, y)
    untargeted = create("fab", eps=4.0, norm="l2", steps=10)(model, x, y)
    assert torch.allclose(targeted, untargeted, atol=1e-6)
    with torch.no_grad():
        assert bool((model(targeted).argmax(1) != y).all())  # a linear model is always broken


# -------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("square", {}, "eps"),
        ("fab-t", {}, "eps"),
        ("square", {"eps": 0.1, "n_queries": 0}, "n_queries"),
        ("square", {"eps": 0.1, "p_init": 1.5}, "p_init"),
        ("square", {"eps": 0.1, "norm": "l0"}, "norm"),  # l1 is theirs now
        ("fab", {"eps": 0.1, "norm": "l0"}, "norm"),  # l1 is theirs now
        ("fab", {"eps": 0.1, "alpha_max": 2.0}, "alpha_max"),
        ("fab", {"eps": 0.1, "steps": 0}, "steps"),
        ("fab-t", {"eps": 0.1, "n_target_classes": 0}, "n_target_classes"),
        ("transfer", {"eps": 0.1}, "surrogate"),
        ("transfer", {"eps": 0.1, "surrogate": "lenet"}, "surrogate"),
        ("transfer", {"eps": 0.1, "surrogate": nn.Linear(2, 2), "attack": "nope"}, "nope"),
        ("transfer", {"eps": 0.1, "surrogate": nn.Linear(2, 2), "steps": 0}, "steps"),
    ],
)
def test_bad_configuration_raises(name, kwargs, match):
    with pytest.raises((ValueError, KeyError), match=match):  # AttackError is a ValueError
        create(name, **kwargs)


def test_square_needs_images():
    model = nn.Linear(6, 3)
    with pytest.raises(AttackError, match="images"):
        create("square", eps=0.1)(model, torch.rand(4, 6), torch.zeros(4, dtype=torch.long))


# ------------------------------------------------------- cross-check against torchattacks
@pytest.mark.slow
@pytest.mark.reference
def test_no_weaker_than_torchattacks(mnist_small):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = mnist_small
    eps = 0.15
    ours = accuracy(model, create("square", eps=eps, n_queries=200, seed=0)(model, x, y), y)
    ref = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=200, seed=0)
    theirs = accuracy(model, ref(x, y), y)
    assert ours <= theirs + 0.01, (ours, theirs)
    ours = accuracy(model, create("fab-t", eps=eps, steps=20, seed=0)(model, x, y), y)
    ref = torchattacks.FAB(
        model, norm="Linf", eps=eps, steps=20, multi_targeted=True, n_classes=10, seed=0
    )
    theirs = accuracy(model, ref(x, y), y)
    assert ours <= theirs + 0.01, (ours, theirs)
