"""Weight averaging (issue #34 item 2): an EMA of the weights with TensorFlow's warm-up, SWA
with batch-norm statistics recomputed, saved as model-averaged.safetensors beside the last
weights, resumed bit for bit, and used by `load_run`, `evaluate` and the report by default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import robustlab
from robustlab.cli import main
from robustlab.common.errors import ConfigError
from robustlab.runs.checkpoint import WeightsError
from robustlab.runs.load import load_model, load_run
from robustlab.training import TrainConfig, train
from robustlab.training.averaging import EMA, SWA

AVERAGED = "model-averaged.safetensors"
SMALL = dict(dataset="mnist", model="lenet5", epochs=2, train_size=200, val_size=100,
             batch_size=50, optimizer="adam", lr=2e-3, weight_decay=0.0, seed=0, recipe="none",
             progress=False, device="cpu", threads=1)


def small_cfg(root: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, "data_dir": str(root), "out_dir": str(out), **kw})


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class BNNet(nn.Module):
    """conv -> batch-norm -> linear: float buffers (running mean / var) and an integer one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 26 * 26, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(self.conv(x)).flatten(1))


# ------------------------------------------------------------------------- the averages
def test_ema_of_a_constant_model_is_that_model_bit_for_bit(mnist_splits, one_thread):
    """Real steps at learning rate 0 (SGD: weight decay and momentum move nothing either): the
    EMA after every step stays the model, every tensor bit for bit."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)
    ema = EMA(net, decay=0.999)
    x, y = mnist_splits.train.x[:200], mnist_splits.train.y[:200]
    for i in range(0, 200, 20):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[i:i + 20]), y[i:i + 20]).backward()
        opt.step()
        ema.after_step(net)
    assert ema.count == 10
    assert _same(ema.state, net.state_dict())
    assert _same(ema.averaged_model(net).state_dict(), net.state_dict())
    bn = BNNet().eval()  # buffers too: running statistics and num_batches_tracked
    bn.bn.running_mean.uniform_()
    bn.bn.num_batches_tracked.fill_(7)
    ema = EMA(bn, decay=0.9)
    for _ in range(25):
        ema.update(bn)
    assert _same(ema.state, bn.state_dict())


def test_ema_follows_the_formula_with_tensorflows_warm_up():
    """avg_{t+1} = d_t avg_t + (1 - d_t) w_{t+1}, d_t = min(decay, (1 + t) / (10 + t)): the
    warm-up rules the first 8 updates (decay 0.5 then caps it); a float buffer is averaged with
    the same decay, an integer buffer copied."""
    class Scalar(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros((), dtype=torch.float64))
            self.register_buffer("stat", torch.zeros((), dtype=torch.float64))
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    model = Scalar()
    ema = EMA(model, decay=0.5)
    values = [float(k * k % 7) - 2.5 for k in range(1, 31)]
    expected = 0.0
    for t, w in enumerate(values):
        with torch.no_grad():
            model.w.fill_(w)
            model.stat.fill_(2 * w)
            model.steps.fill_(t + 1)
        d = min(0.5, (1 + t) / (10 + t))
        assert ema.current_decay() == d
        ema.after_step(model)
        expected = d * expected + (1 - d) * w
        assert ema.state["w"].item() == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert ema.state["stat"].item() == pytest.approx(2 * expected, rel=1e-12, abs=1e-12)
        assert ema.state["steps"].item() == t + 1
    # the first two by hand: 0.1 * 0 + 0.9 * w1, then 2/11 of that + 9/11 of w2
    first = EMA(Scalar(), decay=0.999)
    for w in values[:2]:
        with torch.no_grad():
            model.w.fill_(w)
        first.after_step(model)
    assert first.state["w"].item() == pytest.approx(2 / 11 * 0.9 * values[0] + 9 / 11 * values[1])


def test_swa_of_k_epoch_end_weights_is_their_mean():
    """From swa_start on (epochs done > swa_start), the equal-weight mean of the epoch-end
    weights; earlier epochs are left out."""
    torch.manual_seed(1)
    model = nn.Linear(5, 3).double()
    swa = SWA(model, start=2, bn_batches=lambda: ())
    seen = []
    for epoch in range(1, 7):
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        swa.after_epoch(model, epochs_done=epoch)
        if epoch > 2:
            seen.append({k: v.clone() for k, v in model.state_dict().items()})
    assert swa.count == 4
    for name, avg in swa.state.items():
        mean = torch.stack([s[name] for s in seen]).mean(0)
        assert torch.allclose(avg, mean, rtol=0, atol=1e-12), name


def test_swa_recomputes_batch_norm_statistics_for_the_averaged_weights(mnist_splits):
    """The averaged model's running mean is the mean of the training data through the
    averaged weights (one pass, train mode, no gradient), not an average of old statistics."""
    torch.manual_seed(0)
    model = BNNet()
    x = mnist_splits.train.x[:400]
    swa = SWA(model, start=0, bn_batches=lambda: (x[i:i + 100] for i in range(0, 400, 100)))
    for epoch in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
            model.bn.running_mean.fill_(123.0)  # stale statistics: must not survive
        swa.after_epoch(model, epochs_done=epoch)
    averaged = swa.averaged_model(model)
    assert not averaged.training
    with torch.no_grad():
        features = nn.functional.conv2d(x, swa.state["conv.weight"], swa.state["conv.bias"])
    expected = features.mean(dim=(0, 2, 3))
    assert torch.allclose(averaged.bn.running_mean, expected, atol=1e-5)
    assert averaged.bn.num_batches_tracked.item() == 4
    assert torch.equal(averaged.conv.weight, swa.state["conv.weight"])
    assert all(not p.requires_grad for p in averaged.parameters())
    # with dropout in the pass: the same statistics whatever the global RNG, which it leaves
    drop = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm2d(1))
    swa = SWA(drop, start=0, bn_batches=lambda: (x[i:i + 100] for i in range(0, 400, 100)),
              seed=3)
    swa.after_epoch(drop, epochs_done=1)
    means = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        before = torch.get_rng_state()
        swa._model = None  # computed again
        means.append(swa.averaged_model(drop)[1].running_mean.clone())
        assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(means[0], means[1])


# ------------------------------------------------------------------------- config checks
@pytest.mark.parametrize("change, field", [
    (dict(ema=1.0), "ema"), (dict(ema=-0.1), "ema"), (dict(ema="x"), "ema"),
    (dict(ema=float("nan")), "ema"), (dict(swa_start=2), "swa_start"),
    (dict(swa_start=-1), "swa_start"), (dict(swa_start="1"), "swa_start"),
    (dict(ema=0.99, swa_start=0), "swa_start"),
])
def test_bad_averaging_values_are_one_config_error(change, field, mnist_root, tmp_path,
                                                   capsys):
    with pytest.raises(ConfigError, match=rf"^{field}: ") as err:
        TrainConfig(**{**SMALL, **change}).validate()
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=rf"^{field}: "):  # robustlab.train, before compute
        robustlab.train("lenet5", "mnist", out_dir=str(tmp_path / "py"), epochs=2,
                        data_dir=str(mnist_root), progress=False, **change)
    assert not (tmp_path / "py").exists()
    sets = [f"--set={k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in change.items()]
    capsys.readouterr()
    code = main(["train", "--epochs", "2", "--out", str(tmp_path / "cli"), "--data-dir",
                 str(mnist_root), "--no-progress", *sets])
    err_text = capsys.readouterr().err
    assert code == 2 and err_text.startswith(f"robustlab train: error: {field}: ")
    assert err_text.count("\n") == 1 and not (tmp_path / "cli").exists()


def test_the_flags_reach_the_config(mnist_root, tmp_path, capsys):
    """--ema / --swa-start set the fields; a value argparse cannot read names the flag."""
    assert main(["train", "--ema", "1", "--out", str(tmp_path / "a"), "--data-dir",
                 str(mnist_root)]) == 2
    assert "robustlab train: error: ema: expected a decay per step in [0, 1)" in \
        capsys.readouterr().err
    assert main(["train", "--swa-start", "9", "--epochs", "3", "--out", str(tmp_path / "b"),
                 "--data-dir", str(mnist_root)]) == 2
    assert "error: swa_start: expected a number of epochs in [0, 3)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--ema", "x", "--out", str(tmp_path / "c")])
    assert exit_.value.code == 2 and "--ema: expected float, got 'x'" in capsys.readouterr().err


# ------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def ema_run(mnist_root, tmp_path_factory) -> Path:
    """A finished EMA run (2 epochs, 200 images), trained by `robustlab.train(..., ema=0.99)`.
    READ-ONLY: copy it to write into it."""
    out = tmp_path_factory.mktemp("avg") / "ema"
    fields = {k: v for k, v in SMALL.items() if k not in ("model", "dataset", "recipe")}
    result = robustlab.train("lenet5", "mnist", recipe="none", out_dir=str(out), ema=0.99,
                             data_dir=str(mnist_root), **fields)
    assert result.summary["averaging"] == "ema"
    assert _same(result.model.state_dict(), load_file(str(out / AVERAGED)))
    return out


@pytest.fixture(scope="module")
def plain_run(mnist_root, tmp_path_factory) -> Path:
    """The same run without averaging. READ-ONLY."""
    out = tmp_path_factory.mktemp("avg") / "plain"
    train(small_cfg(mnist_root, out))
    return out


def test_averaging_leaves_training_alone_and_writes_both_weights(ema_run, plain_run, mnist_root,
                                                                 mnist_splits, tmp_path):
    """The last weights of an EMA or SWA run are the plain run's bit for bit (averaging never
    changes training); the plain run has no averaged file and no averaging fields; summary.json
    records both digests, test_acc of the averaged weights, test_acc_last of the last."""
    plain = robustlab.training.RunResult(
        plain_run, json.loads((plain_run / "summary.json").read_text()), [])
    swa = train(small_cfg(mnist_root, tmp_path / "swa", swa_start=0))
    last = load_file(str(plain.run_dir / "model.safetensors"))
    for run in (ema_run, swa.run_dir):
        assert _same(load_file(str(run / "model.safetensors")), last)
        assert not _same(load_file(str(run / AVERAGED)), last)
    assert sorted(p.name for p in plain.run_dir.iterdir()) == [
        "config.json", "metrics.jsonl", "model.safetensors", "summary.json"]
    assert not {"averaging", "test_acc_last", "averaged_weights_sha256"} & set(plain.summary)
    summary = json.loads((ema_run / "summary.json").read_text())
    meta = robustlab.runs.checkpoint.load_weights(ema_run / AVERAGED, load_model(ema_run))
    assert summary["averaged_weights_sha256"] == meta["weights_sha256"]
    assert summary["weights_sha256"] == plain.summary["weights_sha256"]
    test = mnist_splits.test
    for weights, key in (("averaged", "test_acc"), ("last", "test_acc_last")):
        model = load_model(ema_run, weights=weights)
        with torch.no_grad():
            acc = (model(test.x).argmax(1) == test.y).float().mean().item()
        assert summary[key] == pytest.approx(acc, abs=1e-6)
    assert summary["test_acc_last"] == plain.summary["test_acc"]
    assert swa.summary["averaging"] == "swa" and swa.summary["test_acc"] is not None


class _Stop:
    """Stops the run after its first epoch's checkpoint, as a kill would."""

    def on_epoch(self, row):
        raise KeyboardInterrupt


def test_resume_of_an_swa_run_with_batch_norm_is_bit_identical(mnist_splits, tmp_path):
    """robustlab.train(net, (x, y), swa_start=0) on a batch-norm model of your own, stopped
    after epoch 1 of 2 and resumed: the averaged weights (their recomputed batch-norm
    statistics included) and the last ones equal the uninterrupted run's bit for bit."""
    train_xy = (mnist_splits.train.x[:200], mnist_splits.train.y[:200])
    test_xy = (mnist_splits.test.x[:200], mnist_splits.test.y[:200])
    fields = dict(test=test_xy, swa_start=0, epochs=2, batch_size=50, optimizer="adam",
                  lr=2e-3, weight_decay=0.0, threads=1, progress=False, recipe="none",
                  device="cpu")

    def run(name: str, **kw):
        torch.manual_seed(0)
        return robustlab.train(BNNet(), train_xy, out_dir=str(tmp_path / name), **fields, **kw)

    with pytest.raises(KeyboardInterrupt):
        run("stopped", callbacks=[_Stop()])
    resumed, unbroken = run("stopped", resume=True), run("unbroken")
    for name in ("model.safetensors", AVERAGED):
        assert _same(load_file(str(resumed.run_dir / name)),
                     load_file(str(unbroken.run_dir / name))), name
    averaged = load_file(str(unbroken.run_dir / AVERAGED))
    last = load_file(str(unbroken.run_dir / "model.safetensors"))
    assert not torch.equal(averaged["bn.running_mean"], last["bn.running_mean"])
    assert averaged["bn.num_batches_tracked"].item() == 4  # one pass: 200 images, batch 50
    assert resumed.summary["test_acc"] == unbroken.summary["test_acc"]


def test_resume_of_an_ema_run_is_bit_identical(mnist_root, tmp_path):
    """Stopped after epoch 1 of 2 (its checkpoint holds the EMA and its update count) and
    resumed: both weights files, the digests and both accuracies equal the unbroken run's."""
    cfg = small_cfg(mnist_root, tmp_path / "stopped", ema=0.99)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_Stop()])
    assert (tmp_path / "stopped" / AVERAGED).is_file()  # published with epoch 1
    assert not (tmp_path / "stopped" / "summary.json").exists()
    resumed = train(cfg, resume=True)
    unbroken = train(cfg.replace(out_dir=str(tmp_path / "unbroken")))
    for name in ("model.safetensors", AVERAGED):
        assert _same(load_file(str(resumed.run_dir / name)),
                     load_file(str(unbroken.run_dir / name))), name
    for key in ("test_acc", "test_acc_last", "weights_sha256", "averaged_weights_sha256"):
        assert resumed.summary[key] == unbroken.summary[key], key
    assert _same(resumed.model.state_dict(), load_file(str(unbroken.run_dir / AVERAGED)))


def test_load_run_checks_the_averaged_weights(ema_run, tmp_path):
    run = Path(shutil.copytree(ema_run, tmp_path / "run"))
    assert load_run(run, device="cpu").weights == "averaged"
    assert load_run(run, device="cpu", weights="last").weights == "last"
    with pytest.raises(ConfigError, match="^weights: expected one of"):
        load_model(run, weights="best")
    shutil.copy(run / "model.safetensors", run / AVERAGED)  # other weights under its name
    with pytest.raises(WeightsError, match=f"{AVERAGED} does not match the digest"):
        load_model(run)
    (run / AVERAGED).unlink()
    with pytest.raises(WeightsError, match=f"{AVERAGED} is missing.*weights='last'"):
        load_model(run)
    assert load_model(run, weights="last") is not None


def test_an_averaging_run_folder_is_robustlabs_and_exports_its_averaged_weights(
        ema_run, tmp_path, capsys):
    """--overwrite accepts the folder (model-averaged.safetensors is in RUN_LAYOUT); export
    writes the averaged weights by default, says so, and the last ones when asked."""
    from robustlab.runs.export import export_model
    from robustlab.runs.folder import _check_replaceable

    _check_replaceable(ema_run)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for weights in ("averaged", "last"):
        path = export_model(ema_run, tmp_path / f"{weights}.pt", weights=weights)
        assert ("exporting the averaged weights" in capsys.readouterr().err) == \
            (weights == "averaged")
        with torch.no_grad():
            expected = load_model(ema_run, weights=weights)(x)
            assert torch.allclose(torch.jit.load(str(path))(x), expected, atol=1e-5)


# ------------------------------------------------------------------------- evaluate, report
def _evaluate(run: Path, *extra: str) -> dict:
    args = ["evaluate", str(run), "--attacks", "fgsm", "--eps", "0.1", "--n", "64",
            "--device", "cpu", "--no-audit", "--no-curve", "--overwrite", "--no-progress", *extra]
    assert main(args) == 0
    return json.loads((run / "eval.json").read_text())


def test_evaluate_uses_the_averaged_weights_by_default_and_says_so(ema_run, mnist_splits,
                                                                   tmp_path, capsys):
    run = Path(shutil.copytree(ema_run, tmp_path / "run"))
    x, y = mnist_splits.test.x[:64], mnist_splits.test.y[:64]
    accs = {}
    for weights in ("averaged", "last"):
        with torch.no_grad():
            accs[weights] = (load_model(run, weights=weights)(x).argmax(1) == y).float().mean()
    data = _evaluate(run)
    assert "evaluating its averaged weights (ema, model-averaged.safetensors)" in \
        capsys.readouterr().err
    assert data["weights"] == "averaged" and data["averaging"] == "ema"
    assert data["clean"]["acc"] == pytest.approx(accs["averaged"].item())
    assert data["training"]["test_acc_last"] is not None
    data = _evaluate(run, "--run-weights", "last")
    assert "evaluating its last weights (model.safetensors), not its ema average" in \
        capsys.readouterr().err
    assert data["weights"] == "last" and "averaging" not in data
    assert data["clean"]["acc"] == pytest.approx(accs["last"].item())
    _evaluate(run)
    assert main(["report", str(tmp_path)]) == 0  # the report names the weights of its rows
    report = (tmp_path / "report.md").read_text()
    assert ("Weights: the runs trained with weight averaging are evaluated with their "
            "averaged weights (standard: EMA, 1 run)") in report


def test_an_old_run_folder_evaluates_its_last_weights_as_before(plain_run, tmp_path, capsys):
    """A run written before averaging (config.json without its fields, no averaged file): the
    last weights, no word on stderr about weights; --run-weights averaged says there are none;
    it resumes (finished: as it is) with the fields' defaults filled in."""
    run = Path(shutil.copytree(plain_run, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    for key in ("ema", "swa_start"):
        del config["train"][key]
    (run / "config.json").write_text(json.dumps(config))
    assert load_run(run, device="cpu").weights == "last"
    data = _evaluate(run)
    assert "weights" not in capsys.readouterr().err
    assert data["weights"] == "last" and "averaging" not in data
    data = _evaluate(run, "--run-weights", "averaged")
    assert "trained without weight averaging" in capsys.readouterr().err
    assert data["weights"] == "last"
    cfg = TrainConfig(**{**SMALL, **config["train"]})
    assert train(cfg, resume=True).summary == json.loads((run / "summary.json").read_text())


def test_old_eval_files_read_as_last_in_the_report(ema_run, tmp_path):
    from robustlab.reporting.collect import record_from_eval

    run = Path(shutil.copytree(ema_run, tmp_path / "run"))
    data = _evaluate(run)
    rec = record_from_eval(data, run / "eval.json", run, None, tmp_path)
    assert (rec["weights"], rec["averaging"]) == ("averaged", "ema")
    for key in ("weights", "averaging"):
        data.pop(key)
    rec = record_from_eval(data, run / "eval.json", run, None, tmp_path)
    assert (rec["weights"], rec["averaging"]) == ("last", None)
