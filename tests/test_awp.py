"""Adversarial weight perturbation (`TrainConfig.awp`, training/methods/awp.py; Wu, Xia & Wang
2020): the weights are restored exactly, the perturbation has the paper's size and direction,
awp=0 trains exactly as before, resume is bit-identical, the warm-up holds, bad values are one
line (real MNIST batches, a tiny conv net with batch norm)."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import robustlab
from robustlab.cli import main
from robustlab.common.errors import ConfigError
from robustlab.plugins import load_plugins
from robustlab.registry import METHODS
from robustlab.training import TrainConfig, train
from robustlab.training.methods.awp import (
    awp_log,
    perturbed_parameters,
    preserved_buffers,
    weight_perturbation,
)
from robustlab.training.methods.base import TrainContext
from robustlab.training.methods.perturb import (
    differentiable_forward,
    generate,
    input_gradient_mode,
    step_from,
    unwrap,
)

EPS = 0.3
GAMMA = 0.01
OPTIONS = {"pgd-at": {"steps": 2}, "trades": {"steps": 2}, "mart": {"steps": 2},
           "hybrid": {}, "hybrid-fgsm": {}, "fgsm-rs": {}}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 5, stride=2), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 12 * 12, 10))


def _setup(name: str, splits, **fields):
    """(model, method, ctx, x, y) for one step of `name` on 64 real MNIST images."""
    load_plugins()
    cfg = TrainConfig(method=name, eps=EPS, epochs=2, **fields).validate()
    model = _net().train()
    method = METHODS.get(name)(**OPTIONS.get(name, {}))
    ctx = TrainContext(cfg=cfg, model=model, device=torch.device("cpu"), train=splits.train,
                       val=splits.val, num_classes=10, steps_per_epoch=10)
    method.setup(ctx)
    method.start_epoch(ctx)
    return model, method, ctx, splits.train.x[:64], splits.train.y[:64]


def _record_objective(method, calls: list):
    """Wrap `method.objective` to keep the parameters it saw at each call."""
    inner = method.objective

    def recording(model, x, y, x_adv, ctx):
        calls.append({k: p.detach().clone() for k, p in unwrap(model).named_parameters()})
        return inner(model, x, y, x_adv, ctx)

    method.objective = recording


@pytest.mark.parametrize("name", ["pgd-at", "trades", "mart", "hybrid", "hybrid-fgsm"])
def test_awp_step_with_lr_0_leaves_every_weight_bit_identical(mnist_splits, name):
    model, method, ctx, x, y = _setup(name, mnist_splits, awp=GAMMA)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    calls: list = []
    _record_objective(method, calls)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=0.0)
    method.train_step(model, opt, x, y, ctx)
    assert len(calls) == 2  # the gradient pass at w, the training pass at w + v
    perturbed = calls[1]
    assert not torch.equal(perturbed["0.weight"], before["0.weight"])  # it did perturb
    for k, p in model.named_parameters():
        assert torch.equal(p, before[k]), k


def test_awp_step_keeps_the_optimizers_update_and_batch_norm_sees_one_step(mnist_splits):
    model, method, ctx, x, y = _setup("pgd-at", mnist_splits, awp=GAMMA)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.0, weight_decay=0.0)
    method.train_step(model, opt, x, y, ctx)
    for k, p in model.named_parameters():  # w0 - lr * (the gradient at the perturbed weights)
        torch.testing.assert_close(p - before[k], -0.1 * p.grad, rtol=1e-4, atol=1e-6)
    # the gradient pass left no trace: the PGD's and the training forward's updates only
    plain, method2, ctx2, _, _ = _setup("pgd-at", mnist_splits, awp=0.0)
    torch.manual_seed(3)
    method2.train_step(plain, torch.optim.SGD(plain.parameters(), lr=0.1), x, y, ctx2)
    bn, bn_plain = model[1], plain[1]
    assert int(bn.num_batches_tracked) == int(bn_plain.num_batches_tracked)


def test_perturbation_has_size_gamma_times_each_layer_norm_and_spares_1d_params(mnist_splits):
    model, method, ctx, x, y = _setup("trades", mnist_splits, awp=GAMMA)
    params = perturbed_parameters(model)
    assert [p.shape for p in params] == [model[0].weight.shape, model[4].weight.shape]
    x_adv = method.adversarial_examples(model, x, y, ctx)
    v = weight_perturbation(method.objective(model, x, y, x_adv, ctx).loss, params, GAMMA)
    for p, d in zip(params, v, strict=True):
        assert float(d.norm()) == pytest.approx(GAMMA * float(p.detach().norm()), rel=1e-6)
    # inside the step: the weights the objective sees differ by v; biases and BN untouched
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    calls: list = []
    _record_objective(method, calls)
    method.train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, ctx)
    seen = calls[1]
    for k, w0 in before.items():
        if w0.dim() > 1:
            assert float((seen[k] - w0).norm()) == pytest.approx(GAMMA * float(w0.norm()),
                                                                 rel=1e-3)
        else:
            assert torch.equal(seen[k], w0), k


@pytest.mark.parametrize("name", ["pgd-at", "trades", "mart", "hybrid"])
def test_perturbation_direction_increases_the_objective(mnist_splits, name):
    model, method, ctx, x, y = _setup(name, mnist_splits, awp=GAMMA)
    x_adv = method.adversarial_examples(model, x, y, ctx)
    params = perturbed_parameters(model)
    with preserved_buffers(model):
        loss0 = method.objective(model, x, y, x_adv, ctx).loss
        v = weight_perturbation(loss0, params, GAMMA)
        with torch.no_grad():
            for p, d in zip(params, v, strict=True):
                p.add_(d)
            loss1 = method.objective(model, x, y, x_adv, ctx).loss
    assert float(loss1) > float(loss0.detach()) + 1e-4


# --------------------------------------------------------- awp=0: the step as it was before
def _old_pgd_at(model, x, y, method, ctx):
    x_adv = generate("pgd", model, x, y, EPS, "linf", steps=2, step=None, noise_mult=2.0,
                     random_start=True)
    return F.cross_entropy(model(x_adv), y)


def _old_trades(model, x, y, method, ctx, steps=2, beta=6.0):
    step = 2.5 * EPS / steps
    logits = model(x)
    p_clean = F.softmax(logits.detach(), dim=1)
    x_adv = (x + 0.001 * torch.randn_like(x)).clamp(0.0, 1.0)
    net = differentiable_forward(unwrap(model))
    with input_gradient_mode(model, x):
        for _ in range(steps):
            xr = x_adv.detach().requires_grad_(True)
            kl = F.kl_div(F.log_softmax(net(xr), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, xr)
            x_adv = step_from(x, xr.detach(), grad, step, EPS, "linf")
    robust = F.kl_div(F.log_softmax(model(x_adv.detach()), dim=1), F.softmax(logits, dim=1),
                      reduction="batchmean")
    return F.cross_entropy(logits, y) + beta * robust


def _old_hybrid(model, x, y, method, ctx):
    x_adv = generate("pgd", model, x, y, method._eps_now, "linf", steps=2, step=None,
                     noise_mult=2.0)
    logits = model(x)
    a = method.alpha
    return a * F.cross_entropy(logits, y) + (1.0 - a) * F.cross_entropy(model(x_adv), y)


@pytest.mark.parametrize("name, old", [("pgd-at", _old_pgd_at), ("trades", _old_trades),
                                       ("hybrid", _old_hybrid)])
def test_awp_0_trains_bit_identically_to_the_code_before_awp(mnist_splits, name, old):
    model, method, ctx, x, y = _setup(name, mnist_splits)
    reference = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    opt_ref = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for step in range(2):
        torch.manual_seed(10 + step)
        out = method.train_step(model, opt, x, y, ctx)
        torch.manual_seed(10 + step)
        opt_ref.zero_grad(set_to_none=True)
        loss = old(reference, x, y, method, ctx)
        loss.backward()
        opt_ref.step()
        assert torch.equal(out.loss.detach(), loss.detach())
    for (k, p), q in zip(model.state_dict().items(), reference.state_dict().values(),
                         strict=True):
        assert torch.equal(p, q), k


# ------------------------------------------------------------------- warm-up, resume, logs
def test_no_perturbation_before_the_warmup_epoch(mnist_splits):
    model, method, ctx, x, y = _setup("pgd-at", mnist_splits, awp=GAMMA, awp_warmup=1)
    plain, method0, ctx0, _, _ = _setup("pgd-at", mnist_splits)
    for progress, perturbs in ((0.0, False), (0.9, False), (1.0, True)):
        ctx.progress = ctx0.progress = progress
        start = copy.deepcopy(model.state_dict())
        plain.load_state_dict(start)
        opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (model, plain)]
        torch.manual_seed(5)
        method.train_step(model, opts[0], x, y, ctx)
        torch.manual_seed(5)
        method0.train_step(plain, opts[1], x, y, ctx0)
        same = all(torch.equal(p, q) for p, q in zip(model.parameters(), plain.parameters(),
                                                        strict=True))
        assert same != perturbs, progress
        assert awp_log(ctx.cfg, progress) == {"awp_active": perturbs}
    assert awp_log(ctx0.cfg, 1.0) == {}  # a run without AWP logs nothing about it


class _StopAfterFirstEpoch:
    def on_epoch(self, row):
        raise RuntimeError("killed after epoch 1")


def _run_cfg(root, out) -> TrainConfig:
    return TrainConfig(dataset="mnist", model="lenet5", method="pgd-at",
                       method_options={"steps": 2}, eps=EPS, awp=GAMMA, awp_warmup=0.5,
                       epochs=2, train_size=256, val_size=128, batch_size=64,
                       data_dir=str(root), out_dir=str(out), progress=False, device="cpu",
                       threads=1)


def test_resume_of_an_awp_run_is_bit_identical_to_an_unbroken_run(mnist_root, tmp_path):
    unbroken = train(_run_cfg(mnist_root, tmp_path / "a"))
    assert [m["awp_active"] for m in unbroken.metrics] == [True, True]  # from its 3rd of 4 steps on
    with pytest.raises(RuntimeError, match="killed after epoch 1"):
        train(_run_cfg(mnist_root, tmp_path / "b"), callbacks=[_StopAfterFirstEpoch()])
    resumed = train(_run_cfg(mnist_root, tmp_path / "b"), resume=True)
    w0 = load_file(str(unbroken.run_dir / "model.safetensors"))
    w1 = load_file(str(resumed.run_dir / "model.safetensors"))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in
                                                          unbroken.metrics]


# ------------------------------------------------------------------------------- bad values
BAD = [
    ({"awp": -1}, "awp: expected a relative size gamma in [0, 1]"),
    ({"awp": "x"}, "awp: expected a relative size gamma in [0, 1]"),
    ({"awp": 1.5}, "awp: expected a relative size gamma in [0, 1]"),
    ({"awp": float("nan")}, "awp: expected"),
    ({"awp": True}, "awp: expected"),
    ({"awp": 0.01, "method": "standard"}, "awp: method 'standard' has no adversarial-weight"),
    ({"awp": 0.01, "method": "free-at"}, "awp: method 'free-at' has no adversarial-weight"),
    ({"awp": 0.01, "awp_warmup": 3}, "awp_warmup: 3 epochs is longer than the run"),
    ({"awp": 0.01, "awp_warmup": -1}, "awp_warmup: expected a number of epochs >= 0"),
    ({"awp_warmup": 1}, "awp_warmup: 1 epochs given without awp"),
]


@pytest.mark.parametrize("fields, message", BAD)
def test_bad_awp_values_are_one_config_error_line(fields, message, tmp_path):
    base = {"method": "pgd-at", "eps": EPS, "epochs": 2}
    with pytest.raises(ConfigError, match=None) as err:
        TrainConfig(**{**base, **fields}).validate()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    data = (torch.rand(20, 1, 28, 28), torch.arange(20) % 10)
    kw = {**base, **fields}
    with pytest.raises(ConfigError) as err:
        robustlab.train(_net(), data, method=kw.pop("method"), out_dir=str(tmp_path / "r"),
                        recipe="none", **kw)
    assert str(err.value).startswith(message)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, message", [
    (["--awp", "-1"], "awp: expected a relative size gamma"),
    (["--set", "awp=x"], "awp: expected a relative size gamma"),
    (["--awp", "0.01", "--method", "standard"], "awp: method 'standard' has no"),
    (["--awp", "0.01", "--awp-warmup", "3"], "awp_warmup: 3 epochs is longer"),
])
def test_bad_awp_values_from_the_command_line(capsys, tmp_path, flags, message):
    args = ["train", "--method", "pgd-at", "--eps", "0.3", "--epochs", "2",
            "--out", str(tmp_path / "r"), *flags]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert f"robustlab train: error: {message}" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_a_run_recorded_before_awp_and_label_smoothing_still_resumes(mnist_run_copy):
    """config.json written before these fields existed: read with their defaults, resumed."""
    path = mnist_run_copy / "config.json"
    record = json.loads(path.read_text())
    for field in ("awp", "awp_warmup", "label_smoothing"):
        del record["train"][field]
    path.write_text(json.dumps(record))
    cfg = TrainConfig.from_dict(record["train"])
    assert (cfg.awp, cfg.awp_warmup, cfg.label_smoothing) == (0.0, 0.0, 0.0)
    summary = json.loads((mnist_run_copy / "summary.json").read_text())
    result = train(cfg.replace(out_dir=str(mnist_run_copy)), resume=True)
    assert result.summary == summary
