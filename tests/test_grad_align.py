"""GradAlign (training/methods/grad_align.py): the regulariser's value and its gradient (double
backpropagation, checked by finite differences), the `grad_align` option of the pgd-at and
hybrid families (the loss / accumulated gradient against the objective written out by hand,
the step's budget, no CPU kernels around the double backward) and its refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_methods_units import batch, fake_ctx, tiny_model
from torch import nn

from robustlab.accel.cpu_kernels import CPUKernels
from robustlab.cli import main
from robustlab.common.errors import ConfigError
from robustlab.training.methods import create_method
from robustlab.training.methods.grad_align import grad_align_backward, grad_align_loss
from robustlab.training.methods.losses import hybrid_loss
from robustlab.training.methods.perturb import fgsm_rs, input_grad

EPS = 0.3


def _mnist(mnist_splits, n=64):
    return mnist_splits.train.x[:n], mnist_splits.train.y[:n]


def _cnn(channels=8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, channels, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(channels * 14 * 14, 10))


def _by_hand(model, x, y, eps, lam):
    """The paper's formula written out: eta ~ U[-eps, eps]^d (the next draw of the global RNG),
    grad at x detached, grad at x + eta (not clipped) differentiable, cosine per image."""
    xr = x.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    eta = (2 * torch.rand(x.shape) - 1) * eps
    xe = (x + eta).requires_grad_(True)
    (g2,) = torch.autograd.grad(F.cross_entropy(model(xe), y), xe, create_graph=True)
    cos = F.cosine_similarity(g1.flatten(1), g2.flatten(1), dim=1)
    return lam * (1 - cos).mean()


# ------------------------------------------------------------------------------ the value
def test_zero_when_the_input_gradient_keeps_its_direction(mnist_splits, one_thread):
    """A linear two-class model: grad_x CE = (p_1 - [y = 1]) (w_1 - w_0), one direction (up to
    a sign fixed by the label) at every point of the ball; the ReLU CNN's is not."""
    x, y = _mnist(mnist_splits)
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    torch.manual_seed(1)
    assert abs(float(grad_align_loss(linear, x, y % 2, eps=EPS).detach())) < 1e-6
    torch.manual_seed(1)
    reg = float(grad_align_loss(_cnn(), x, y, eps=EPS).detach())
    assert 1e-3 < reg < 1.0


def test_lambda_scales_it_and_l2_draws_inside_the_l2_ball(mnist_splits, one_thread):
    x, y = _mnist(mnist_splits, 16)
    model = _cnn(4)
    values = []
    for lam in (1.0, 0.25):
        torch.manual_seed(2)
        values.append(float(grad_align_loss(model, x, y, eps=EPS, lam=lam).detach()))
    assert values[1] == pytest.approx(values[0] * 0.25, rel=1e-6)
    torch.manual_seed(2)
    assert 0 < float(grad_align_loss(model, x, y, eps=2.0, norm="l2").detach()) < 1


def test_images_with_a_zero_gradient_do_not_count_and_give_no_nan(one_thread):
    """A saturated softmax gives an exactly zero (or denormal) input gradient on confidently
    classified images: the authors drop them from the mean; the backward stays finite."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10))
    x, y = batch(16)
    with torch.no_grad():
        model[3].weight.mul_(1e4)
        y = model(x).argmax(1)  # all confidently right: p_y == 1.0 in float32
    y[:4] = (y[:4] + 1) % 10  # four wrong ones keep a gradient
    reg = grad_align_loss(model, x, y, eps=0.1)
    reg.backward()
    assert torch.isfinite(reg) and all(torch.isfinite(p.grad).all() for p in model.parameters())


# ------------------------------------------------------------------- the gradient (double bp)
def test_its_gradient_reaches_the_weights_and_equals_finite_differences(one_thread):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (5,), generator=g)

    clean = input_grad(model, x, y)  # the gradient at x is a constant (detached, the authors')

    def reg(clean_grad=clean) -> torch.Tensor:
        torch.manual_seed(7)  # the same eta every time
        return grad_align_loss(model, x, y, eps=0.5, lam=0.8, clean_grad=clean_grad)

    params = list(model.parameters())
    grads = torch.autograd.grad(reg(), params)
    torch.testing.assert_close(grads, torch.autograd.grad(reg(None), params))  # same thing
    assert all(gr.abs().sum() > 0 for gr in grads)
    direction = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    h = 1e-5
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(sign * h * d)
        values.append(float(reg().detach()))
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(sign * h * d)
    numeric = (values[0] - values[1]) / (2 * h)
    analytic = sum(float((gr * d).sum()) for gr, d in zip(grads, direction, strict=True))
    assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-9) and abs(analytic) > 1e-4


def test_it_refuses_to_run_under_the_cpu_kernels(mnist_splits, one_thread):
    x, y = _mnist(mnist_splits, 8)
    with CPUKernels(), pytest.raises(RuntimeError, match="CPUKernels"):
        grad_align_loss(_cnn(), x, y, eps=EPS)


# --------------------------------------------------------------------------- the methods
@pytest.mark.parametrize("name", ["pgd-at", "fgsm-rs", "n-fgsm", "hybrid", "hybrid-fgsm", "mix"])
def test_off_by_default_with_the_cpu_kernels_and_on_without_them(name):
    assert create_method(name).grad_align == 0.0 and create_method(name).cpu_kernels is True
    assert create_method(name, grad_align=0.2).cpu_kernels is False  # double backprop


def test_fgsm_rs_loss_is_ce_plus_lambda_reg_at_the_steps_budget(one_thread):
    x, y = batch()
    method = create_method("fgsm-rs", grad_align=0.5)
    ctx = fake_ctx(x, y, eps=EPS, method="fgsm-rs", eps_warmup=2.0)
    ctx.progress = 0.5  # a quarter of the warm-up: eps 0.1 x 0.3 + 0.25 x 0.9 x 0.3
    method.setup(ctx)
    model = tiny_model()
    torch.manual_seed(5)
    out = method.loss(model, x, y, ctx)
    eps_t = method.eps_last
    assert eps_t == pytest.approx(EPS * (0.1 + 0.9 * 0.25)) and eps_t < EPS
    torch.manual_seed(5)
    x_adv = fgsm_rs(model, x, y, eps_t, "linf", step=1.25 * eps_t)
    expected = F.cross_entropy(model(x_adv), y) + _by_hand(model, x, y, eps_t, 0.5)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    assert out.loss.requires_grad


@pytest.mark.parametrize("name", ["pgd-at", "fgsm-rs", "n-fgsm"])
def test_grad_align_zero_is_the_method_without_it_to_the_bit(name):
    x, y = batch()
    model = tiny_model()
    losses = []
    for options in ({}, {"grad_align": 0.0}):
        method = create_method(name, **options)
        method.setup(fake_ctx(x, y, eps=EPS, method=name))
        torch.manual_seed(5)
        losses.append(method.loss(model, x, y, fake_ctx(x, y, eps=EPS, method=name)).loss)
        losses.append(torch.rand(1))  # the RNG is where it was: no extra draw
    assert all(torch.equal(a, b) for a, b in zip(losses[:2], losses[2:], strict=True))


@pytest.mark.parametrize("name, generator", [("hybrid-fgsm", "fgsm"), ("hybrid", "pgd")])
def test_hybrid_accumulated_gradient_is_autograd_of_the_whole_objective(name, generator):
    """hybrid_backward (the FGSM one shares the clean backward and scales the .grad it finds
    by alpha) then the regulariser's backward: the sum of the two gradients, nothing scaled."""
    x, y = batch()
    method = create_method(name, alpha=0.3, grad_align=0.7)
    ctx = fake_ctx(x, y, eps=EPS, method=name)
    method.setup(ctx)
    method.start_epoch(ctx)
    eps_t = method._eps_now
    model, reference = tiny_model(), tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    torch.manual_seed(5)
    out = method.train_step(model, optimizer, x, y, ctx)
    torch.manual_seed(5)
    objective = hybrid_loss(reference, x, y, eps=eps_t, alpha=0.3, generator=generator)
    objective = objective + grad_align_loss(reference, x, y, eps=eps_t, lam=0.7)
    objective.backward()
    torch.testing.assert_close(out.loss, objective.detach(), rtol=1e-5, atol=1e-6)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)


def test_grad_align_backward_adds_to_the_grad_it_finds(one_thread):
    x, y = batch()
    model = tiny_model()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    torch.manual_seed(3)
    grad_align_backward(model, x, y, eps=0.1, lam=1.0)
    reference = tiny_model()
    torch.manual_seed(3)
    wanted = torch.autograd.grad(grad_align_loss(reference, x, y, eps=0.1), list(
        reference.parameters()))
    for p, w in zip(model.parameters(), wanted, strict=True):
        torch.testing.assert_close(p.grad, w + 1, rtol=1e-5, atol=1e-6)


def test_fgsm_rs_with_grad_align_trains_where_the_cpu_kernels_apply(mnist_root, tmp_path,
                                                                      monkeypatch):
    """LeNet-5 on the CPU: the loop would run the step under CPUKernels (1-channel conv, 2x2
    pools), whose backward is once-differentiable; with grad_align it does not."""
    from robustlab.training import TrainConfig, train

    monkeypatch.setenv("ROBUSTLAB_DATA", str(mnist_root))
    result = train(TrainConfig(
        dataset="mnist", model="lenet5", method="fgsm-rs", eps=EPS, epochs=1,
        method_options={"grad_align": 0.2, "val_samples": 64, "val_steps": 2},
        train_size=256, val_size=64, batch_size=128, seed=0, recipe="none", progress=False,
        device="cpu", threads=1, out_dir=str(tmp_path / "run")))
    assert result.summary["epochs_done"] == 1 and result.summary["health"] != "non-finite"
    assert torch.isfinite(torch.tensor(result.metrics[0]["train_loss"]))


# ------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("value", [-1, "x", float("nan"), float("inf"), True])
@pytest.mark.parametrize("name", ["fgsm-rs", "hybrid-fgsm"])
def test_bad_values_are_one_config_error_naming_the_option(name, value):
    with pytest.raises(ConfigError, match=r"^method_options\.grad_align: expected a finite "
                                          r"number >= 0, got"):
        create_method(name, grad_align=value)


@pytest.mark.parametrize("value", ["-1", "x"])
def test_the_cli_refuses_a_bad_value_in_one_line(value, capsys, tmp_path):
    code = main(["train", "--method", "fgsm-rs", "--eps", "0.3", "--opt", f"grad_align={value}",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "method_options.grad_align: expected" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
