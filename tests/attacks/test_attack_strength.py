"""Attack strength on a LeNet-5 trained on real MNIST, and cross-checks against independent
implementations (torchattacks, ART, the original AutoAttack) on the same model and inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlab.attacks import create_attack
from robustlab.attacks.reference import original_autoattack, torchattacks_autoattack


def _acc(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_pgd40_breaks_a_standard_lenet(mnist_lenet):
    model, x, y = mnist_lenet
    x, y = x[:200], y[:200]
    x_adv = create_attack("pgd", eps=0.3, norm="linf", steps=40, step_size=0.01, seed=0)(
        model, x, y
    )
    acc = _acc(model, x_adv, y)
    print(f"\nPGD-40 eps=0.3 accuracy: {acc:.4f} (clean {_acc(model, x, y):.4f})")
    assert acc <= 0.01


def test_cw_l2_median_distortion(mnist_lenet):
    model, x, y = mnist_lenet
    x, y = x[:50], y[:50]
    attack = create_attack("cw-l2", steps=100, lr=0.05, binary_search_steps=5, c_init=0.1)
    x_adv, norms = attack.attack_with_norms(model, x, y)
    ok = torch.isfinite(norms)
    median = norms[ok].median().item()
    print(f"\nCW-L2 success {ok.float().mean():.3f}, median L2 {median:.3f}")
    assert ok.float().mean().item() >= 0.95
    # a standard MNIST CNN typically needs L2 ~1-2.5 (Carlini & Wagner 2017 report ~1.4-2.0)
    assert 0.5 <= median <= 3.0
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    assert bool((pred[ok] != y[ok]).all())


# ------------------------------------------------------------------- reference cross-checks
N_REF = 300
EPS_REF = 0.1


@pytest.fixture(scope="module")
def ref_data(mnist_lenet):
    model, x, y = mnist_lenet
    return model, x[:N_REF], y[:N_REF]


@pytest.mark.reference
def test_pgd_and_fgsm_no_weaker_than_torchattacks(ref_data):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = ref_data
    alpha = 2.5 * EPS_REF / 10
    torch.manual_seed(0)
    ta_pgd = _acc(model, torchattacks.PGD(model, eps=EPS_REF, alpha=alpha, steps=10)(x, y), y)
    rl_pgd = _acc(
        model, create_attack("pgd", eps=EPS_REF, steps=10, step_size=alpha)(model, x, y), y
    )
    ta_fgsm = _acc(model, torchattacks.FGSM(model, eps=EPS_REF)(x, y), y)
    rl_fgsm = _acc(model, create_attack("fgsm", eps=EPS_REF)(model, x, y), y)
    print(
        f"\nPGD-10 acc: robustlab {rl_pgd:.4f} torchattacks {ta_pgd:.4f}; "
        f"FGSM acc: robustlab {rl_fgsm:.4f} torchattacks {ta_fgsm:.4f}"
    )
    assert 0.0 < ta_pgd < 0.9, "eps should make the comparison non-trivial"
    assert rl_pgd <= ta_pgd + 0.005
    assert rl_fgsm <= ta_fgsm + 1e-9


@pytest.mark.reference
def test_pgd_l2_no_weaker_than_torchattacks(ref_data):
    # L2 random starts must be spread inside the ball (radius eps * U): a start uniform in
    # the ball lies on its sphere in 784 dimensions and measured 0.6-0.8 points weaker
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = ref_data
    eps, steps = 1.5, 10
    alpha = 2.5 * eps / steps
    torch.manual_seed(0)
    ta = _acc(model, torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps)(x, y), y)
    rl = _acc(model, create_attack("pgd", eps=eps, norm="l2", steps=steps,
                                   step_size=alpha)(model, x, y), y)
    print(f"\nPGD-L2-10 eps {eps} acc: robustlab {rl:.4f} torchattacks {ta:.4f}")
    assert 0.0 < ta < 0.9, "eps should make the comparison non-trivial"
    assert rl <= ta + 0.005


@pytest.mark.reference
def test_pgd_no_weaker_than_art(ref_data):
    pytest.importorskip("art")
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    model, x, y = ref_data
    clf = PyTorchClassifier(
        model=model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    alpha = 2.5 * EPS_REF / 10
    # both attacks are randomised: compare means over 9 seeds. With 3 (one image of 300 is
    # 0.33 pt) the verdict flipped with the model's training environment: 0.3767 vs ART 0.3844
    # when written, 0.3911 vs 0.3800 on a later package set, for the same attack code.
    art_accs, rl_accs = [], []
    for seed in range(9):
        art_pgd = ProjectedGradientDescent(
            clf,
            norm=np.inf,
            eps=EPS_REF,
            eps_step=alpha,
            max_iter=10,
            num_random_init=1,
            batch_size=N_REF,
            verbose=False,
        )
        np.random.seed(seed)
        torch.manual_seed(seed)
        x_art = torch.from_numpy(art_pgd.generate(x.numpy(), y=y.numpy()))
        model.eval()
        art_accs.append(_acc(model, x_art, y))
        rl = create_attack("pgd", eps=EPS_REF, steps=10, step_size=alpha, seed=seed)
        rl_accs.append(_acc(model, rl(model, x, y), y))
    art_acc, rl_acc = float(np.mean(art_accs)), float(np.mean(rl_accs))
    print(f"\nPGD-10 acc (mean of 9 seeds): robustlab {rl_acc:.4f} ART {art_acc:.4f}")
    assert rl_acc <= art_acc + 0.005


@pytest.mark.reference
def test_cw_l2_no_weaker_than_torchattacks(ref_data):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = ref_data
    x, y = x[:50], y[:50]
    ta = torchattacks.CW(model, c=1.0, kappa=0.0, steps=50, lr=0.01)(x, y)
    rl_attack = create_attack("cw-l2", steps=50, lr=0.05, binary_search_steps=3, c_init=1.0)
    rl, norms = rl_attack.attack_with_norms(model, x, y)
    ta_acc, rl_acc = _acc(model, ta, y), _acc(model, rl, y)
    with torch.no_grad():
        ta_ok = model(ta).argmax(1) != y
    ta_norms = (ta - x).flatten(1).norm(dim=1)[ta_ok]
    print(
        f"\nCW-L2 acc: robustlab {rl_acc:.4f} torchattacks {ta_acc:.4f}; median L2 robustlab "
        f"{norms[torch.isfinite(norms)].median():.3f} torchattacks {ta_norms.median():.3f}"
    )
    assert rl_acc <= ta_acc + 1e-9


def _check_autoattack(model, x, y, eps: float) -> None:
    pytest.importorskip("torchattacks")
    aa = create_attack("autoattack", eps=eps, norm="linf", seed=0)
    rl_acc = _acc(model, aa(model, x, y), y)
    torch.manual_seed(0)
    ta_acc = _acc(model, torchattacks_autoattack(model, eps)(x, y), y)
    print(
        f"\nAutoAttack eps={eps} acc on {len(x)}: robustlab {rl_acc:.4f} "
        f"torchattacks {ta_acc:.4f}; robustlab breakdown {aa.last_breakdown}"
    )
    assert rl_acc <= ta_acc + 0.01


# ~40 s on 2 idle cores: the image-by-image comparisons with the original AutoAttack below
# (linf, l2) stay in `make test`; torchattacks' AutoAttack runs in `make test-slow` (100 and
# 500 images) and in bench/autoattack_pair.py
@pytest.mark.slow
@pytest.mark.reference
def test_autoattack_matches_torchattacks_standard(ref_data):
    model, x, y = ref_data
    _check_autoattack(model, x[:100], y[:100], EPS_REF)


@pytest.mark.slow
@pytest.mark.reference
def test_autoattack_matches_torchattacks_standard_500(mnist_lenet):
    model, x, y = mnist_lenet
    _check_autoattack(model, x[:500], y[:500], 0.15)


def _check_against_original(model, x, y, eps: float, norm: str, max_missed: int) -> None:
    """robustlab's standard AutoAttack against the authors' code (PyPI `pyautoattack`), image
    by image: robustlab may leave robust at most `max_missed` images the original breaks."""
    pytest.importorskip("pyautoattack")
    aa = create_attack("autoattack", eps=eps, norm=norm, seed=0)
    with torch.no_grad():
        rl_robust = model(aa(model, x, y)).argmax(1) == y
        orig_robust = model(original_autoattack(model, eps, norm=norm)(x, y)).argmax(1) == y
    missed = int((rl_robust & ~orig_robust).sum())
    print(f"\nAutoAttack {norm} eps={eps} on {len(x)}: robustlab {rl_robust.float().mean():.4f} "
          f"original {orig_robust.float().mean():.4f}; broken only by the original {missed}, "
          f"only by robustlab {int((~rl_robust & orig_robust).sum())}")
    assert 0 < int(orig_robust.sum()) < len(x), "eps should make the comparison non-trivial"
    assert missed <= max_missed


@pytest.mark.reference
def test_autoattack_matches_original_linf(ref_data):
    # measured on this fixture (seed 0 both sides): robustlab 0.26, original 0.25; the one
    # image only the original breaks falls to robustlab's APGD-T at 2 of seeds 1-5
    model, x, y = ref_data
    _check_against_original(model, x[:100], y[:100], EPS_REF, "linf", max_missed=1)


@pytest.mark.reference
def test_autoattack_matches_original_l2(ref_data):
    # 50 images (100 took ~100 s on one thread, over the suite's 60 s per test): CI keeps
    # the L2 comparison with the original AutoAttack
    model, x, y = ref_data
    _check_against_original(model, x[:50], y[:50], 1.0, "l2", max_missed=1)
