"""Training methods end to end on real MNIST (LeNet-5): short runs through `train` and the CLI.

Each run is tiny (256 training images, 4 steps of 64 an epoch, validation on 200 images) so
the whole file stays fast on a CPU; what is asserted is what each method must do, read back
from the per-epoch metrics.
"""

from __future__ import annotations

import json

import pytest

from robustlab.cli import main as cli_main
from robustlab.training import ConfigError, TrainConfig, train
from robustlab.training.methods.validation import adaptive_alpha

EPS = 0.3
VAL = {"val_samples": 200}  # hybrid-family validation subset (default 1000)


def run(tmp_path, root, method, *, epochs=2, eps=EPS, name=None, **options):
    cfg = TrainConfig(method=method, method_options=options, eps=eps, epochs=epochs,
                      train_size=256, batch_size=64, val_size=1000, data_dir=str(root),
                      progress=False,
                      out_dir=str(tmp_path / (name or method)))
    return train(cfg).metrics


def col(metrics, key):
    return [m[key] for m in metrics]


def check_alpha_formula(metrics):
    alphas = col(metrics, "alpha")
    assert alphas[0] == 0.5
    for e in range(len(metrics) - 1):
        want = adaptive_alpha(metrics[e]["val_clean_acc"], metrics[e]["val_adv_acc"])
        assert alphas[e + 1] == pytest.approx(want, abs=1e-12)


@pytest.mark.integration  # real-MNIST training runs
def test_ablations_differ_only_where_they_should(tmp_path, mnist_root):
    opts = {**VAL, "generator": "fgsm"}
    runs = {n: run(tmp_path, mnist_root, n, **opts)
            for n in ("hybrid", "hybrid-fixed-alpha", "hybrid-fixed-eps", "mix")}
    # hybrid: eps_0 = eps / 10, eps reached at the ramp's end (max(1, 2 // 2) = 1 epoch).
    assert col(runs["hybrid"], "eps") == pytest.approx([EPS / 10, EPS])
    for row in runs["hybrid"]:
        assert 0 <= row["val_adv_acc"] <= row["val_clean_acc"] <= 1
        assert row["catastrophic_overfitting"] in (True, False)
        assert row["epoch_time_s"] > 0 and row["peak_mem_mb"] > 0
    assert col(runs["hybrid-fixed-alpha"], "eps") == pytest.approx([EPS / 10, EPS])
    assert col(runs["hybrid-fixed-eps"], "eps") == pytest.approx([EPS, EPS])
    assert col(runs["mix"], "eps") == pytest.approx([EPS, EPS])
    check_alpha_formula(runs["hybrid"])
    check_alpha_formula(runs["hybrid-fixed-eps"])
    assert col(runs["hybrid-fixed-alpha"], "alpha") == [0.5, 0.5]
    assert col(runs["mix"], "alpha") == [0.5, 0.5]
    # Same seed, same eps and alpha in epoch 1 -> the very same first epoch.
    for a, b in (("hybrid", "hybrid-fixed-alpha"), ("hybrid-fixed-eps", "mix")):
        assert runs[a][0]["train_loss"] == runs[b][0]["train_loss"]
        assert runs[a][0]["val_adv_acc"] == runs[b][0]["val_adv_acc"]
    # ... and different ones where eps differs.
    assert runs["hybrid"][0]["train_loss"] != runs["hybrid-fixed-eps"][0]["train_loss"]


@pytest.mark.integration  # real-MNIST training runs
def test_hybrid_schedule_options(tmp_path, mnist_root):
    per_step = run(tmp_path, mnist_root, "hybrid", name="ps", per_step=True, generator="fgsm",
                   **VAL)
    # 4 steps in epoch 1, ramp of 1 epoch: the last step of epoch 1 is at progress 3/4.
    assert col(per_step, "eps") == pytest.approx([0.03 + 0.27 * 0.75, EPS])
    smooth = run(tmp_path, mnist_root, "hybrid", name="ema", alpha_ema=0.5,
                 alpha_min=0.2, generator="fgsm", **VAL)
    a = col(smooth, "alpha")
    want = max(0.2, 0.5 * 0.5 + 0.5 * adaptive_alpha(smooth[0]["val_clean_acc"],
                                                      smooth[0]["val_adv_acc"]))
    assert a[1] == pytest.approx(want) and min(a) >= 0.2


@pytest.mark.parametrize("method,options", [
    ("pgd-at", {"steps": 2}), ("fgsm-rs", {"val_samples": 200}), ("n-fgsm", {"val_samples": 200}),
    ("free-at", {"m": 2}), ("trades", {"steps": 2}), ("mart", {"steps": 2}),
    ("gradient-reg", {}),
])
@pytest.mark.integration  # a real-MNIST training run
def test_adversarial_baselines_train_and_log_eps(tmp_path, mnist_root, method, options):
    m = run(tmp_path, mnist_root, method, epochs=1, **options)
    assert m[0]["eps"] == EPS
    assert m[0]["train_loss"] > 0 and m[0]["epoch_time_s"] > 0
    if method in ("fgsm-rs", "n-fgsm"):  # single-step: the overfitting guard is on
        assert {"val_clean_acc", "val_adv_acc", "catastrophic_overfitting"} <= set(m[0])


@pytest.mark.integration  # a real-MNIST training run
def test_lipschitz_trains_and_reloads(tmp_path, mnist_root):
    from robustlab.runs.load import load_run

    cfg = TrainConfig(method="lipschitz", epochs=1, train_size=256, val_size=1000,
                      data_dir=str(mnist_root), progress=False, out_dir=str(tmp_path / "lip"))
    res = train(cfg)
    assert res.metrics[0]["spectral_max"] > 0
    loaded = load_run(res.run_dir, data_dir=str(mnist_root))  # plain state_dict keys
    assert loaded.model is not None


@pytest.mark.integration  # a real-MNIST training run
def test_cli_trains_hybrid_with_options(tmp_path, mnist_root):
    out = tmp_path / "cli"
    rc = cli_main(["train", "--method", "hybrid", "--eps", "0.3", "--epochs", "1",
                   "--recipe", "paper",
                   "--train-size", "256", "--val-size", "500", "--data-dir", str(mnist_root),
                   "--opt", "steps=1", "--opt", "val-samples=100", "--no-progress",
                   "--out", str(out)])
    assert rc == 0
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["eps"] == pytest.approx(0.03) and row["alpha"] == 0.5


def test_config_errors_before_compute(tmp_path, mnist_root):
    with pytest.raises(ConfigError, match="eps"):
        TrainConfig(method="hybrid").validate()
    with pytest.raises(ConfigError, match="bogus"):
        run(tmp_path, mnist_root, "hybrid", bogus=1)


class _Stop(Exception):
    pass


@pytest.mark.slow  # ~4 tiny epochs; the state round trip itself is unit-tested
def test_hybrid_resume_is_bit_identical(tmp_path, mnist_root, monkeypatch):
    from robustlab.training.methods.hybrid import Hybrid

    opts = {"val_samples": 100, "generator": "fgsm", "schedule": "adaptive",
            "adaptive_threshold": 0.0}
    unbroken = run(tmp_path, mnist_root, "hybrid", name="unbroken", **opts)
    original = Hybrid.start_epoch

    def stop_at_second_epoch(self, ctx):
        if ctx.epoch == 1:
            raise _Stop
        return original(self, ctx)

    monkeypatch.setattr(Hybrid, "start_epoch", stop_at_second_epoch)
    with pytest.raises(_Stop):
        run(tmp_path, mnist_root, "hybrid", name="broken", **opts)
    monkeypatch.setattr(Hybrid, "start_epoch", original)
    cfg = TrainConfig(method="hybrid", method_options=opts, eps=EPS, epochs=2, train_size=256,
                      batch_size=64, val_size=1000, data_dir=str(mnist_root), progress=False,
                      out_dir=str(tmp_path / "broken"))
    resumed = train(cfg, resume=True).metrics
    keep = ("train_loss", "eps", "alpha", "val_clean_acc", "val_adv_acc")
    assert [{k: r[k] for k in keep} for r in resumed] == [{k: r[k] for k in keep}
                                                          for r in unbroken]
    # adaptive schedule, threshold 0: eps_t doubles after every epoch; resumed from the state.
    assert col(unbroken, "eps") == pytest.approx([0.03, 0.06])
    assert "val_adv_acc_eps_t" in unbroken[0]
    check_alpha_formula(resumed)
