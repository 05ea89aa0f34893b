"""Training methods, unit level (no data): perturbations, schedules, alpha, guard, losses."""

from __future__ import annotations

import json
import math
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.data import ArraySplit
from robustlab.registry import METHODS
from robustlab.runs.checkpoint import flatten_state
from robustlab.training.methods import create_method
from robustlab.training.methods import perturb as P
from robustlab.training.methods.eps_schedule import AdaptiveEps, scheduled_eps
from robustlab.training.methods.options import defaults_of
from robustlab.training.methods.validation import OverfitGuard, adaptive_alpha

ADVERSARIAL = ["hybrid", "hybrid-fixed-eps", "hybrid-fixed-alpha", "mix", "pgd-at", "fgsm-rs",
               "n-fgsm", "free-at", "trades", "mart", "gradient-reg"]


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))


def batch(n: int = 16):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def fake_ctx(x, y, *, eps=0.1, norm="linf", epochs=2, method="hybrid", eps_warmup=0.0):
    cfg = SimpleNamespace(eps=eps, norm=norm, epochs=epochs, seed=0, method=method,
                          eps_warmup=eps_warmup, eps_warmup_start=0.1,
                          eps_warmup_schedule="linear")
    return SimpleNamespace(cfg=cfg, val=ArraySplit(x, y), model=None, epoch=0, step=0,
                           progress=0.0, steps_per_epoch=1)


# ---------------------------------------------------------------------------- perturbations
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("gen", ["fgsm", "fgsm-rs", "pgd"])
def test_generators_stay_in_ball_and_image_and_leave_param_grads(norm, gen):
    model, (x, y) = tiny_model(), batch()
    eps = 0.1 if norm == "linf" else 0.5
    torch.manual_seed(0)
    x_adv = P.generate(gen, model, x, y, eps, norm, steps=3)
    assert all(p.grad is None for p in model.parameters())  # autograd.grad w.r.t. x only
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert bool((size <= eps + 1e-5).all())
    assert float(size.max()) > 0.5 * eps  # it moved


def test_n_fgsm_is_not_projected_but_bounded_by_noise_plus_step():
    model, (x, y) = tiny_model(), batch(64)
    x = 0.25 + 0.5 * x  # away from the [0, 1] borders so clipping does not hide the size
    torch.manual_seed(0)
    x_adv = P.n_fgsm(model, x, y, 0.1, "linf", step=0.1, noise=0.2)
    size = (x_adv - x).abs().flatten(1).amax(1)
    assert float(size.max()) > 0.1 + 1e-3 and float(size.max()) <= 0.3 + 1e-6


def test_pgd_raises_the_loss_above_fgsm_start():
    model, (x, y) = tiny_model(), batch(64)
    ce = lambda z: float(F.cross_entropy(model(z), y).detach())  # noqa: E731
    torch.manual_seed(0)
    x_pgd = P.pgd(model, x, y, 0.1, "linf", steps=5, step=0.025)
    assert ce(x_pgd) > ce(x) + 0.05


def test_default_steps_follow_the_papers():
    assert P.default_step("fgsm-rs", 0.3, 1) == pytest.approx(0.375)  # 1.25 eps, Wong et al.
    assert P.default_step("pgd", 0.3, 10) == pytest.approx(0.075)  # 2.5 eps / k, Madry et al.
    assert P.default_step("n-fgsm", 0.3, 1) == pytest.approx(0.3)


# ---------------------------------------------------------------------------- schedules
def test_closed_form_schedules_start_at_eps0_and_end_at_eps():
    for kind in ("linear", "cosine", "step", "exponential"):
        assert scheduled_eps(kind, 0.3, 0.03, 0.0) == pytest.approx(0.03)
        assert scheduled_eps(kind, 0.3, 0.03, 1.0) == pytest.approx(0.3)
    assert scheduled_eps("linear", 0.3, 0.03, 0.5) == pytest.approx(0.165)
    assert scheduled_eps("cosine", 0.3, 0.03, 0.5) == pytest.approx(0.165)
    assert scheduled_eps("exponential", 0.3, 0.03, 0.5) == pytest.approx(0.03 * math.sqrt(10))
    assert scheduled_eps("step", 0.3, 0.03, 0.49, levels=2) == pytest.approx(0.03)
    assert scheduled_eps("step", 0.3, 0.03, 0.5, levels=2) == pytest.approx(0.165)
    assert scheduled_eps("constant", 0.3, 0.03, 0.0) == 0.3


def test_adaptive_eps_grows_only_above_threshold_and_never_beyond_eps():
    s = AdaptiveEps(0.3, 0.03, factor=4.0, threshold=0.5)
    assert not s.update(0.49) and s.value == pytest.approx(0.03)
    assert s.update(0.5) and s.value == pytest.approx(0.12)
    assert s.update(0.9) and s.value == pytest.approx(0.3)
    assert not s.update(0.9) and s.value == pytest.approx(0.3)


def test_adaptive_alpha_formula():
    assert adaptive_alpha(0.9, 0.6) == pytest.approx(0.6 / 1.5)
    assert adaptive_alpha(0.0, 0.0) == 0.5
    assert adaptive_alpha(1.0, 0.0) == 0.0


def test_overfit_guard_flags_drop_and_floor_with_warning():
    g = OverfitGuard(drop=0.3, floor=0.05, fgsm_high=0.5)
    assert g.check(0.6, lambda: 0.7, method="m", epoch=0) == {
        "val_fgsm_acc": 0.7, "catastrophic_overfitting": False}
    with pytest.warns(RuntimeWarning, match="catastrophic overfitting"):
        assert g.check(0.2, lambda: 0.3, method="m", epoch=1)["catastrophic_overfitting"]
    g = OverfitGuard()
    with pytest.warns(RuntimeWarning):
        logs = g.check(0.01, lambda: 0.9, method="m", epoch=0)
    assert logs == {"val_fgsm_acc": 0.9, "catastrophic_overfitting": True}
    # Low PGD and low FGSM accuracy: not robust yet, but no overfitting.
    assert not OverfitGuard().check(0.01, lambda: 0.1, method="m", epoch=0)[
        "catastrophic_overfitting"]
    # Still ramping the budget: the floor test is skipped (FGSM is not measured).
    assert OverfitGuard().check(0.01, lambda: 1 / 0, method="m", epoch=0, at_target=False) == {
        "catastrophic_overfitting": False}


@pytest.mark.parametrize(("pgd", "fgsm", "flagged"), [
    (0.688, 0.922, True),    # the quick demo's FGSM hybrid (validation PGD-5, 500 images)
    (0.698, 0.892, True),    # paper-cpu's FGSM hybrid
    (0.878, 0.930, False),   # paper-cpu's fgsm-rs (healthy, the largest guarded gap: 0.052)
    (0.900, 0.938, False),   # pgd-at
    (0.700, 0.840, False),   # a gap just under co_gap
])
def test_overfit_guard_flags_a_fgsm_pgd_gap_at_the_target_budget(pgd, fgsm, flagged):
    """The signature of catastrophic overfitting even while PGD accuracy itself stays high
    (the quick demo's FGSM hybrid kept validation PGD at 0.69 and fell to 18.9 % AutoAttack)."""
    g = OverfitGuard(gap=0.15)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logs = g.check(pgd, lambda: fgsm, method="m", epoch=3)
    assert logs == {"val_fgsm_acc": fgsm, "catastrophic_overfitting": flagged}
    assert bool(caught) == flagged
    # below the target budget the gap is legitimate (trained at a smaller eps): not flagged
    assert not OverfitGuard(gap=0.15).check(pgd, lambda: fgsm, method="m", epoch=0,
                                            at_target=False)["catastrophic_overfitting"]


# ---------------------------------------------------------------------------- hybrid step
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hybrid_fgsm_shared_backward_equals_the_two_term_loss_gradient(norm):
    x, y = batch()
    model = tiny_model()
    method = create_method("hybrid", generator="fgsm")
    ctx = fake_ctx(x, y, norm=norm)
    method.setup(ctx)
    ctx.epoch = 1  # ramp over 1 epoch: eps_t = eps
    method.start_epoch(ctx)
    method.alpha = 0.3
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    out = method.train_step(model, opt, x, y, ctx)
    got = [p.grad.clone() for p in model.parameters()]

    ref = tiny_model()
    x_adv = P.fgsm(ref, x, y, 0.1, norm)
    loss = 0.3 * F.cross_entropy(ref(x), y) + 0.7 * F.cross_entropy(ref(x_adv), y)
    want = torch.autograd.grad(loss, list(ref.parameters()))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    assert float(out.loss) == pytest.approx(float(loss.detach()), rel=1e-5)
    torch.testing.assert_close(out.logits, ref(x).detach())


def test_hybrid_generic_generator_step_uses_both_terms():
    x, y = batch()
    model = tiny_model()
    method = create_method("hybrid", generator="pgd", steps=2, alpha=1.0)
    ctx = fake_ctx(x, y)
    method.setup(ctx)
    method.start_epoch(ctx)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    out = method.train_step(model, opt, x, y, ctx)
    # alpha = 1: the gradient is the clean loss's alone.
    ref = tiny_model()
    want = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
    for p, w in zip(model.parameters(), want, strict=True):
        torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-6)
    assert float(out.loss) == pytest.approx(float(F.cross_entropy(ref(x), y).detach()), rel=1e-5)


# ---------------------------------------------------------------------------- other losses
def test_free_at_carries_delta_across_batches_within_the_ball():
    x, y = batch()
    model = tiny_model()
    m = create_method("free-at", m=3)
    ctx = fake_ctx(x, y, method="free-at")
    m.setup(ctx)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    m.train_step(model, opt, x, y, ctx)
    d1 = m.delta.clone()
    assert float(d1.abs().max()) == pytest.approx(0.1)  # 3 sign steps of eps, clipped to eps
    m.train_step(model, opt, x[:8], y[:8], ctx)  # a smaller last batch reuses a slice
    assert m.delta.shape == x.shape and torch.equal(m.delta[8:], d1[8:])
    assert not torch.equal(m.delta[:8], d1[:8])


def test_trades_and_mart_add_a_nonnegative_robust_term():
    x, y = batch()
    model = tiny_model()
    ce = float(F.cross_entropy(model(x), y).detach())
    for name in ("trades", "mart"):
        m = create_method(name, steps=2)
        ctx = fake_ctx(x, y, method=name)
        m.setup(ctx)
        torch.manual_seed(0)
        out = m.loss(model, x, y, ctx)
        assert out.loss.requires_grad and float(out.loss) >= ce - 1e-4
        zero = create_method(name, steps=2, beta=0.0)
        zero.setup(ctx)
        torch.manual_seed(0)
        base = float(zero.loss(model, x, y, ctx).loss)
        assert float(out.loss) > base  # beta * (KL term) > 0
    assert all(p.grad is None for p in model.parameters())


def test_gradient_reg_penalty_is_lam_eps_dual_norm():
    x, y = batch()
    model = tiny_model()
    m = create_method("gradient-reg", lam=2.0)
    ctx = fake_ctx(x, y, method="gradient-reg")
    m.setup(ctx)
    out = m.loss(model, x, y, ctx)
    xr = x.clone().requires_grad_(True)
    ce = F.cross_entropy(model(xr), y, reduction="none")
    (g,) = torch.autograd.grad(ce.sum(), xr)
    want = ce.mean() + 2.0 * 0.1 * g.flatten(1).abs().sum(1).mean()
    assert float(out.loss) == pytest.approx(float(want), rel=1e-5)
    out.loss.backward()  # double backprop works
    assert all(p.grad is not None for p in model.parameters())


def test_lipschitz_penalty_shrinks_spectral_norm_and_keeps_state_dict_keys():
    model = tiny_model()
    keys = set(model.state_dict())
    with torch.no_grad():
        model[3].weight.mul_(20)
    m = create_method("lipschitz", lam=1.0, power_iters=3)
    m.setup(SimpleNamespace(model=model, cfg=SimpleNamespace(seed=0)))
    for _ in range(30):  # the power iteration advances at every call
        before = float(m.sigmas()[-1])
    true_sigma = float(torch.linalg.matrix_norm(model[3].weight, ord=2))
    assert before == pytest.approx(true_sigma, rel=0.05)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = batch()
    for _ in range(5):
        opt.zero_grad()
        m.loss(model, x, y, None).loss.backward()
        opt.step()
    assert float(m.sigmas()[-1]) < before
    assert set(model.state_dict()) == keys


# ---------------------------------------------------------------------------- options / state
def test_every_adversarial_method_needs_eps():
    for name in ADVERSARIAL:
        assert METHODS.get(name).needs_eps, name
    assert not METHODS.get("lipschitz").needs_eps


def test_unknown_option_is_a_config_error_naming_it_and_bad_values_name_the_option():
    for name in ADVERSARIAL + ["lipschitz"]:
        with pytest.raises(ConfigError, match=r"method_options: unknown option\(s\) bogus"):
            create_method(name, bogus=1)
    with pytest.raises(ConfigError, match="per_step"):
        create_method("hybrid", schedule="step", per_step=True)
    with pytest.raises(ConfigError, match="generator"):
        create_method("hybrid", generator="cw")
    with pytest.raises(ConfigError, match="alpha"):
        create_method("hybrid", alpha=1.5)
    with pytest.raises(ConfigError, match="m"):
        create_method("free-at", m=0)
    with pytest.raises(ConfigError, match="step_size"):
        create_method("hybrid", generator="fgsm", step_size=0.1)


def test_ablations_are_the_same_class_with_other_defaults():
    h = create_method("hybrid")
    for name, diff in {"mix": {"schedule": "constant", "alpha": 0.5},
                       "hybrid-fixed-eps": {"schedule": "constant"},
                       "hybrid-fixed-alpha": {"alpha": 0.5}}.items():
        cls = METHODS.get(name)
        assert issubclass(cls, type(h))
        base = defaults_of(type(h).OPTIONS)
        changed = {k: v for k, v in defaults_of(cls.OPTIONS).items() if base[k] != v}
        assert changed == diff, name
    assert create_method("mix", schedule="linear").schedule == "linear"  # still overridable


def test_method_states_checkpoint_and_restore():
    x, y = batch()
    model = tiny_model()
    for name in ("hybrid", "free-at", "fgsm-rs", "lipschitz"):
        m = create_method(name)
        ctx = fake_ctx(x, y, method=name)
        ctx.model = model
        m.setup(ctx)
        if name == "free-at":
            m.train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, ctx)
        if name == "hybrid":
            m.alpha = 0.37
        state = m.state_dict()
        tensors, skeleton = flatten_state(state)
        json.dumps(skeleton)
        fresh = create_method(name)
        fresh.setup(ctx)
        fresh.load_state_dict(state)
        assert json.dumps(flatten_state(fresh.state_dict())[1]) == json.dumps(skeleton)


# ---------------------------------------------------------------------------- budget warm-up
def test_eps_warmup_is_the_hybrids_schedule_code_per_step():
    from robustlab.training.methods.eps_schedule import EpsWarmup

    w = EpsWarmup(0.3, 2.0, 0.1)
    assert w.eps_at(0.0) == pytest.approx(0.03)
    assert w.eps_at(1.0) == pytest.approx(0.03 + 0.27 * 0.5)  # halfway, mid-epoch values too
    assert w.eps_at(0.25) == pytest.approx(scheduled_eps("linear", 0.3, 0.03, 0.125))
    assert w.eps_at(2.0) == w.eps_at(5.0) == 0.3
    assert not w.done(1.9) and w.done(2.0)
    assert EpsWarmup(0.3, 0.0, 0.1).eps_at(0.0) == 0.3  # no warm-up: eps from the first step
    assert EpsWarmup(0.3, 2.0, 0.0, "cosine").eps_at(1.0) == pytest.approx(0.15)


@pytest.mark.parametrize("name, options", [
    ("pgd-at", {"steps": 2}), ("fgsm-rs", {"guard": False}), ("n-fgsm", {"guard": False}),
    ("trades", {"steps": 2}), ("mart", {"steps": 2}), ("free-at", {})])
def test_every_adversarial_baseline_trains_at_the_warmed_up_budget(name, options, monkeypatch):
    """The perturbation each baseline builds is bounded by the warm-up's eps_t, not eps."""
    x, y = batch()
    model = tiny_model()
    m = create_method(name, **options)
    ctx = fake_ctx(x, y, method=name, eps=0.4, eps_warmup=2.0)
    m.setup(ctx)
    ctx.progress = 0.5  # a quarter of the way: eps_t = 0.04 + 0.36 / 4 = 0.13
    seen = []
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda z: (seen.append(z.detach()), real(z))[1])
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    m.train_step(model, opt, x, y, ctx)
    size = max(float((z - x).abs().max()) for z in seen if z.shape == x.shape)
    limit = 0.13 * (3 if name == "n-fgsm" else 1)  # N-FGSM's noise 2 eps_t + step eps_t
    assert 0.5 * 0.13 < size <= limit + 1e-6
    assert m.end_epoch(ctx)["eps"] == pytest.approx(0.13)


def test_gradient_reg_penalty_uses_the_warmed_up_budget():
    x, y = batch()
    model = tiny_model()
    full, warm = create_method("gradient-reg", lam=2.0), create_method("gradient-reg", lam=2.0)
    ctx_full, ctx_warm = fake_ctx(x, y, eps=0.4), fake_ctx(x, y, eps=0.4, eps_warmup=2.0)
    full.setup(ctx_full)
    warm.setup(ctx_warm)
    ctx_full.progress = ctx_warm.progress = 0.5
    ce = float(F.cross_entropy(model(x), y).detach())
    pen_full = float(full.loss(model, x, y, ctx_full).loss) - ce
    pen_warm = float(warm.loss(model, x, y, ctx_warm).loss) - ce
    assert pen_warm == pytest.approx(pen_full * 0.13 / 0.4, rel=1e-4)


def test_training_input_gradients_run_through_the_cpu_kernels_and_equal_pytorchs():
    """perturb.input_grad freezes the parameters and enters CPUKernels on the CPU (LeNet-5 has
    the 1-channel conv and the 2x2 pools they take over): same gradient as plain autograd,
    parameters trainable again afterwards, their .grad untouched."""
    from robustlab.accel import cpu_kernels
    from robustlab.models import create_model

    model = create_model("lenet5", num_classes=10, in_channels=1, mean=(0.13,), std=(0.31,),
                         image_size=28)
    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    xr = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
    entered = []
    real = cpu_kernels.CPUKernels.__enter__
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cpu_kernels.CPUKernels, "__enter__",
                   lambda self: (entered.append(1), real(self))[1])
        got = P.input_grad(model, x, y)
    assert entered  # the kernels were used
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
