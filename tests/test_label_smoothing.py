"""Label smoothing (`TrainConfig.label_smoothing`, the `label_smoothing=` keyword of the loss
functions in training/methods/losses.py): off, every loss is what it was; on, it smooths the
training objective's cross-entropy terms only (never an attack's loss, never a KL term), for
every classifier method; bad values are one line (real MNIST batches, a tiny conv net)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.cli import main
from robustlab.common.errors import ConfigError
from robustlab.plugins import load_plugins
from robustlab.registry import METHODS
from robustlab.training import TrainConfig, hybrid_loss, mart_loss, pgd_at_loss, trades_loss
from robustlab.training.methods.base import TrainContext
from robustlab.training.methods.losses import hybrid_backward

EPS = 0.3
S = 0.2
OPTIONS = {"pgd-at": {"steps": 2}, "trades": {"steps": 2}, "mart": {"steps": 2},
           "free-at": {"m": 1}, "fgsm-rs": {"guard": False}}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 6, 5, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 12 * 12, 10))


def _smoothed_ce(logits: torch.Tensor, y: torch.Tensor, s: float) -> torch.Tensor:
    """The formula by hand: (1 - s) * CE + s * mean over classes of -log p."""
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, y[:, None])[:, 0]
    return ((1.0 - s) * nll + s * (-logp).mean(dim=1)).mean()


@pytest.fixture(scope="module")
def batch(mnist_splits):
    return mnist_splits.train.x[:32], mnist_splits.train.y[:32]


class _Recorder(nn.Module):
    """The net, keeping every input of every forward (the attack's iterates and x_adv)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.inputs = net, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.net(x)


LOSSES = {
    "pgd-at": lambda m, x, y, **kw: pgd_at_loss(m, x, y, eps=EPS, steps=2, **kw),
    "fgsm-rs": lambda m, x, y, **kw: pgd_at_loss(m, x, y, eps=EPS, generator="fgsm-rs", **kw),
    "trades": lambda m, x, y, **kw: trades_loss(m, x, y, eps=EPS, steps=2, **kw),
    "mart": lambda m, x, y, **kw: mart_loss(m, x, y, eps=EPS, steps=2, **kw),
    "hybrid": lambda m, x, y, **kw: hybrid_loss(m, x, y, eps=EPS, alpha=0.3, **kw),
    "hybrid-fgsm": lambda m, x, y, **kw: hybrid_loss(m, x, y, eps=EPS, alpha=0.3,
                                                     generator="fgsm", **kw),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_the_attack_is_the_same_with_and_without_smoothing(batch, name):
    x, y = batch
    seen = []
    for s in (0.0, S):
        model = _Recorder(_net())
        torch.manual_seed(1)
        LOSSES[name](model, x, y, label_smoothing=s)
        seen.append(model.inputs)
    assert len(seen[0]) == len(seen[1]) > 1
    assert all(torch.equal(a, b) for a, b in zip(*seen, strict=True))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_0_is_the_unsmoothed_loss_bit_for_bit(batch, name):
    x, y = batch
    model = _net()
    torch.manual_seed(1)
    default = LOSSES[name](model, x, y)
    torch.manual_seed(1)
    assert torch.equal(LOSSES[name](model, x, y, label_smoothing=0.0), default)


def _logits_at(model, inputs):
    with torch.no_grad():
        return [model(t) for t in inputs]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_smoothing_changes_exactly_the_cross_entropy_terms(batch, name):
    """loss(s) - loss(0) equals the hand-computed change of the CE terms on the same x_adv."""
    x, y = batch
    model = _Recorder(_net())
    losses = []
    for s in (0.0, S):
        model.inputs = []
        torch.manual_seed(1)
        losses.append(float(LOSSES[name](model, x, y, label_smoothing=s).detach()))
    x_adv = model.inputs[-1]  # every loss forwards its x_adv last (trades, mart, hybrid: after x)
    clean, adv = _logits_at(model.net, [x, x_adv])

    def delta(logits):
        return float(_smoothed_ce(logits, y, S) - F.cross_entropy(logits, y))

    expected = {"pgd-at": delta(adv), "fgsm-rs": delta(adv), "trades": delta(clean),
                "mart": delta(adv), "hybrid": 0.3 * delta(clean) + 0.7 * delta(adv),
                "hybrid-fgsm": 0.3 * delta(clean) + 0.7 * delta(adv)}[name]
    assert losses[1] - losses[0] == pytest.approx(expected, rel=1e-4, abs=1e-6)


CE_INPUT = {"trades": 0}  # the forward whose logits the CE term takes (default: the last)


def _method_run(name: str, s: float, x, y, cfg: dict):
    """(the method's training loss on the batch, its recording model), seed 2."""
    load_plugins()
    config = TrainConfig(method=name, label_smoothing=s, epochs=2, **cfg).validate()
    model = _Recorder(_net()).train()
    method = METHODS.get(name)(**OPTIONS.get(name, {}))
    ctx = TrainContext(cfg=config, model=model, device=torch.device("cpu"), train=None,
                       val=None, num_classes=10, steps_per_epoch=10)
    method.setup(ctx)
    torch.manual_seed(2)
    if name == "free-at":  # free-at makes its own optimizer step (lr 0: weights unchanged)
        out = method.train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), x, y, ctx)
    else:
        out = method.loss(model, x, y, ctx)
    return float(out.loss.detach()), model


@pytest.mark.parametrize("name, cfg", [("standard", {}), ("gaussian-aug", {}),
                                       ("lipschitz", {}), ("pgd-at", {"eps": EPS}),
                                       ("fgsm-rs", {"eps": EPS}), ("trades", {"eps": EPS}),
                                       ("mart", {"eps": EPS}), ("free-at", {"eps": EPS}),
                                       ("gradient-reg", {"eps": 0.0})])
def test_every_method_smooths_its_training_cross_entropy(batch, name, cfg):
    """Through TrainConfig: loss(s) - loss(0) is the change of the CE term by hand, on the
    input the method forwarded (the same with and without smoothing); gradient-reg at eps 0
    is its CE alone."""
    x, y = batch
    plain, m0 = _method_run(name, 0.0, x, y, cfg)
    smooth, m1 = _method_run(name, S, x, y, cfg)
    i = CE_INPUT.get(name, -1)
    assert torch.equal(m0.inputs[i], m1.inputs[i])
    with torch.no_grad():
        logits = m0.net(m0.inputs[i])
    expected = float(_smoothed_ce(logits, y, S) - F.cross_entropy(logits, y))
    assert abs(expected) > 1e-3
    assert smooth - plain == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_hybrid_fgsm_with_smoothing_takes_fgsm_from_the_unsmoothed_loss(batch):
    """hybrid_backward's shared clean pass would give FGSM the smoothed gradient: with
    smoothing it runs hybrid_loss instead, whose FGSM copy is that of the plain CE."""
    x, y = batch
    losses = []
    for fn in ("backward", "loss"):
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        torch.manual_seed(4)
        if fn == "backward":
            loss, _ = hybrid_backward(model, opt, x, y, eps=EPS, alpha=0.4, generator="fgsm",
                                      label_smoothing=S)
        else:
            loss = hybrid_loss(model, x, y, eps=EPS, alpha=0.4, generator="fgsm",
                               label_smoothing=S)
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])


@pytest.mark.parametrize("value, message", [
    (-0.1, "label_smoothing: expected a number in [0, 1) (0 = off), got -0.1"),
    (1.0, "label_smoothing: expected a number in [0, 1)"),
    ("x", "label_smoothing: expected a number in [0, 1)"),
    (float("nan"), "label_smoothing: expected"),
    (True, "label_smoothing: expected"),
])
def test_bad_label_smoothing_is_one_config_error_line(value, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(label_smoothing=value).validate()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_label_smoothing_is_refused_for_a_method_that_is_no_classifier():
    with pytest.raises(ConfigError, match="label_smoothing: method 'autoencoder' does not "
                                          "train a classifier"):
        TrainConfig(method="autoencoder", label_smoothing=0.1).validate()


def test_bad_label_smoothing_from_the_command_line(capsys, tmp_path):
    code = main(["train", "--label-smoothing", "1.5", "--epochs", "1",
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "robustlab train: error: label_smoothing: expected" in err
    assert not (tmp_path / "r").exists()
