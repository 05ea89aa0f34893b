"""Randomized-smoothing certification (Cohen, Rosenfeld & Kolter 2019): the Clopper-Pearson
bound, CERTIFY on classifiers whose answer is known, the certified-accuracy curve, the
gaussian-aug method and `robustlab certify` on a tiny real-MNIST run."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import pytest
import torch
from torch import nn

from robustlab.certification import (
    CertifySettings,
    accuracy_curve,
    beta_cdf,
    beta_quantile,
    certified_accuracy,
    certified_radius,
    certify_images,
    clopper_pearson_lower,
    max_certifiable_radius,
    summarize,
)
from robustlab.common.errors import ConfigError

PHI_INV = NormalDist().inv_cdf


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ------------------------------------------------------------------------------- the bound
def test_beta_cdf_closed_forms():
    for x in (0.01, 0.3, 0.5, 0.97):
        assert beta_cdf(x, 1.0, 1.0) == pytest.approx(x, abs=1e-14)
        assert beta_cdf(x, 7.0, 1.0) == pytest.approx(x ** 7, rel=1e-12)
        assert beta_cdf(x, 1.0, 4.0) == pytest.approx(1 - (1 - x) ** 4, rel=1e-12)
        # I_x(2, 2) = 3x^2 - 2x^3
        assert beta_cdf(x, 2.0, 2.0) == pytest.approx(3 * x * x - 2 * x ** 3, rel=1e-12)
    assert beta_cdf(0.5, 5000.0, 5000.0) == pytest.approx(0.5, abs=1e-10)
    assert beta_cdf(0.0, 2.0, 3.0) == 0.0 and beta_cdf(1.0, 2.0, 3.0) == 1.0
    assert beta_quantile(0.25, 1.0, 1.0) == pytest.approx(0.25, abs=1e-14)


@pytest.mark.parametrize("n", [1, 10, 100, 10_000])
def test_clopper_pearson_closed_forms(n):
    alpha = 0.001
    # all n successes: p^n = alpha; one success: 1 - (1 - p)^n = alpha
    assert clopper_pearson_lower(n, n, alpha) == pytest.approx(alpha ** (1 / n), rel=1e-12)
    if n > 1:
        assert clopper_pearson_lower(1, n, alpha) == pytest.approx(
            1 - (1 - alpha) ** (1 / n), rel=1e-9)
    assert clopper_pearson_lower(0, n, alpha) == 0.0


def test_clopper_pearson_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    worst = 0.0
    for n in (2, 37, 1000, 10_000, 100_000):
        for k in sorted({1, 2, n // 3, n // 2, n // 2 + 1, 9 * n // 10, n - 1}):
            for alpha in (1e-3, 0.05, 0.3):
                ref = stats.beta.ppf(alpha, k, n - k + 1)
                worst = max(worst, abs(clopper_pearson_lower(k, n, alpha) - ref))
    assert worst < 1e-11


def test_clopper_pearson_known_value_and_bad_counts():
    # 9,900 of 10,000 at alpha 0.001: scipy.stats.beta.ppf(0.001, 9900, 101) = 0.98653...
    assert clopper_pearson_lower(9900, 10_000, 0.001) == pytest.approx(0.986531, abs=1e-6)
    for k, n in ((5, 3), (-1, 3), (0, 0)):
        with pytest.raises(ValueError, match="expected 0 <= k <= n"):
            clopper_pearson_lower(k, n, 0.01)


def test_radius_formula_and_abstention():
    assert certified_radius(0.5, 0.25) is None and certified_radius(0.2, 1.0) is None
    assert certified_radius(0.9, 0.25) == pytest.approx(0.25 * 1.2815515655446004, rel=1e-12)
    # n = 10,000, alpha = 0.001: p_lower <= 0.001^(1e-4) = 0.999309, radius <= 3.2 sigma
    assert max_certifiable_radius(10_000, 0.001, 0.25) == pytest.approx(
        0.25 * PHI_INV(0.001 ** 1e-4), rel=1e-12)
    assert 0.79 < max_certifiable_radius(10_000, 0.001, 0.25) < 0.81


# ------------------------------------------------------------- CERTIFY on known classifiers
class Constant(nn.Module):
    """Always class `c` of `k`, whatever the input."""

    def __init__(self, c: int, k: int = 10) -> None:
        super().__init__()
        self.logits = torch.zeros(k)
        self.logits[c] = 1.0

    def forward(self, x):
        return self.logits.expand(len(x), -1)


class RandomGuess(nn.Module):
    """A uniformly random class of `k` per input (its own generator)."""

    def __init__(self, k: int = 10) -> None:
        super().__init__()
        self.k, self.gen = k, torch.Generator().manual_seed(1)

    def forward(self, x):
        return torch.rand(len(x), self.k, generator=self.gen)


class PixelThreshold(nn.Module):
    """Class 1 iff pixel (0, 0) > 0.5: the distance to the decision boundary is known."""

    def forward(self, x):
        score = x[:, 0, 0, 0] - 0.5
        return torch.stack([-score, score], 1)


def test_constant_classifier_is_certified_at_the_formula_radius():
    x = torch.rand(4, 1, 8, 8)
    y = torch.tensor([3, 3, 0, 3])
    s = CertifySettings(sigma=0.5, n0=10, n=500, alpha=0.001, batch_size=128)
    rows = certify_images(Constant(3), x, y, s, num_classes=10)
    expected = 0.5 * PHI_INV(0.001 ** (1 / 500))
    assert rows["prediction"] == [3, 3, 3, 3] and rows["count"] == [500] * 4
    assert rows["radius"] == pytest.approx([expected] * 4, rel=1e-12)
    assert rows["abstain"] == [False] * 4 and rows["correct"] == [True, True, False, True]


def test_random_classifier_abstains():
    x = torch.rand(6, 1, 8, 8)
    s = CertifySettings(sigma=0.25, n0=20, n=400, alpha=0.001, batch_size=100)
    rows = certify_images(RandomGuess(), x, torch.zeros(6, dtype=torch.long), s, num_classes=10)
    assert rows["abstain"] == [True] * 6 and rows["prediction"] == [-1] * 6
    assert rows["radius"] == [None] * 6 and not any(rows["correct"])
    assert all(25 <= c <= 80 for c in rows["count"])  # ~ n / 10 = 40 votes for the top class
    assert certified_accuracy(rows["radius"], rows["correct"], 0.0) == 0.0


def test_linear_boundary_radius_is_sound_and_tight():
    """f(x) = [x00 > 0.5] at x00 = 0.7: the smoothed classifier's exact radius is 0.2 (the
    distance to the boundary); CERTIFY returns a little less (the bound), never more."""
    x = torch.full((3, 1, 4, 4), 0.3)
    x[:, 0, 0, 0] = 0.7
    s = CertifySettings(sigma=0.25, n0=100, n=10_000, alpha=0.001, batch_size=2500, seed=3)
    rows = certify_images(PixelThreshold(), x, torch.ones(3, dtype=torch.long), s, num_classes=2)
    p_true = NormalDist().cdf(0.2 / 0.25)  # 0.788
    assert all(abs(c / 10_000 - p_true) < 0.02 for c in rows["count"])
    assert all(0.17 < r <= 0.2 for r in rows["radius"]), rows["radius"]


def test_same_seed_same_result_other_seed_other_noise():
    x = torch.full((2, 1, 4, 4), 0.55)
    s = CertifySettings(sigma=0.25, n0=50, n=300, batch_size=64, seed=0)
    a = certify_images(PixelThreshold(), x, torch.ones(2, dtype=torch.long), s, num_classes=2)
    b = certify_images(PixelThreshold(), x, torch.ones(2, dtype=torch.long), s, num_classes=2)
    c = certify_images(PixelThreshold(), x, torch.ones(2, dtype=torch.long),
                       CertifySettings(**{**s.to_dict(), "seed": 1}), num_classes=2)
    assert a["count"] == b["count"] and a["count"] != c["count"]


@pytest.mark.parametrize(("field", "value", "flag"), [
    ("sigma", 0.0, "--sigma"), ("sigma", float("nan"), "--sigma"), ("n0", 0, "--n0"),
    ("n", True, "--n"), ("n", 2.5, "--n"), ("alpha", 0.6, "--alpha"), ("alpha", 0, "--alpha"),
    ("batch_size", 0, "--batch-size"), ("seed", -1, "--seed"),
])
def test_settings_refuse_bad_values_naming_the_flag(field, value, flag):
    kw = {"sigma": 0.25, field: value}
    with pytest.raises(ConfigError, match=f"{flag}: expected"):
        CertifySettings(**kw).validate()


# --------------------------------------------------------------------------------- the curve
def test_certified_accuracy_curve_hand_computed():
    radii = [None, 0.3, 0.6, 0.1]
    correct = [False, True, True, False]  # image 3 is certified but wrong
    assert [certified_accuracy(radii, correct, r) for r in (0.0, 0.3, 0.31, 0.6, 0.61)] == [
        0.5, 0.5, 0.25, 0.25, 0.0]
    curve = accuracy_curve(radii, correct)
    assert curve["radius"][0] == 0.0 and curve["radius"][-1] == 1.0
    assert len(curve["radius"]) == 101 and curve["certified_accuracy"][-1] == 0.0
    assert all(a >= b for a, b in zip(curve["certified_accuracy"],
                                      curve["certified_accuracy"][1:], strict=False))
    s = summarize(radii, correct, [True, False, False, False])
    assert s["certified_accuracy_at"] == {"0": 0.5, "0.25": 0.5, "0.5": 0.25, "0.75": 0.0,
                                          "1": 0.0}
    assert s["abstained"] == 1 and s["mean_radius_correct"] == pytest.approx(0.45)
    with pytest.raises(ValueError, match="2 radii but 1 flags"):
        certified_accuracy([0.1, 0.2], [True], 0.0)


# ------------------------------------------------------------------ the gaussian-aug method
def test_gaussian_aug_adds_pixel_space_noise_of_sigma():
    from robustlab.training.methods import create_method

    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.detach().clone())
            return x.flatten(1)[:, :10]

    x = torch.rand(64, 1, 28, 28)
    torch.manual_seed(0)
    out = create_method("gaussian-aug", sigma=0.5).loss(Spy(), x, torch.zeros(64).long(), None)
    noise = seen[0] - x
    assert abs(float(noise.std()) - 0.5) < 0.01 and abs(float(noise.mean())) < 0.01
    assert float(seen[0].min()) < -0.5  # not clipped to [0, 1]
    assert math.isfinite(float(out.loss)) and out.logits.shape == (64, 10)
    with pytest.raises(ConfigError, match="method_options.sigma: expected"):
        create_method("gaussian-aug", sigma=0)


# ------------------------------------------------------------------- robustlab certify RUN
@pytest.fixture(scope="module")
def gauss_run(mnist_root, tmp_path_factory):
    from robustlab.training import TrainConfig, train

    out = tmp_path_factory.mktemp("cert") / "gauss"
    result = train(TrainConfig(dataset="mnist", model="lenet5", method="gaussian-aug",
                               method_options={"sigma": 0.25}, epochs=1, train_size=3000,
                               val_size=500, lr=0.05, data_dir=str(mnist_root),
                               out_dir=str(out), progress=False, device="cpu", threads=1))
    return result


@pytest.mark.integration  # trains a gaussian-aug run
def test_certify_run_writes_json_and_refuses_overwrite(gauss_run, mnist_root, capsys):
    from robustlab.certification.study import certify_run
    from robustlab.runs.folder import RunFolderError

    run = str(gauss_run.run_dir)
    kw = dict(images=40, n0=20, n=300, alpha=0.001, batch_size=320, device="cpu",
              data_dir=str(mnist_root), progress=False)
    result = certify_run(run, **kw)  # sigma from the run: 0.25
    path = gauss_run.run_dir / "certify-sigma0.25.json"
    on_disk = json.loads(path.read_text())
    assert path.with_suffix(".png").stat().st_size > 1000
    assert on_disk["settings"]["sigma"] == 0.25 == on_disk["training_sigma"]
    per = on_disk["per_sample"]
    assert len(per["radius"]) == 40 == on_disk["summary"]["images"]
    top = max_certifiable_radius(300, 0.001, 0.25)
    assert all(r is None or 0 < r <= top + 1e-12 for r in per["radius"])
    assert on_disk["summary"]["certified_accuracy_at"]["0"] == sum(per["correct"]) / 40
    assert on_disk["summary"]["certified_accuracy_at"]["0.5"] == 0.0  # above the 0.46 limit
    assert on_disk["summary"]["certified_accuracy_at"]["0"] >= 0.6  # learnt under noise
    assert result["timing"]["seconds"] > 0 and "certified accuracy" in capsys.readouterr().out
    with pytest.raises(RunFolderError, match="already exists; pass --overwrite"):
        certify_run(run, **kw)
    with pytest.raises(ConfigError, match="--images: 20000 exceeds the 10000 test images"):
        certify_run(run, **{**kw, "images": 20_000, "overwrite": True})


@pytest.mark.integration  # the gaussian-aug run above
def test_certify_cli_checks_before_compute(gauss_run, mnist_root, tmp_path, capsys):
    from robustlab.cli import main

    run = str(gauss_run.run_dir)
    base = ["certify", run, "--data-dir", str(mnist_root), "--device", "cpu", "--no-progress"]
    assert main(base + ["--sigma", "0"]) == 2
    assert "--sigma: expected a finite number > 0, got 0.0" in capsys.readouterr().err
    assert main(base + ["--images", "0"]) == 2
    assert "--images: expected an integer >= 1" in capsys.readouterr().err
    assert main(["certify", str(tmp_path / "none"), "--sigma", "0.25"]) == 2
    assert "does not exist" in capsys.readouterr().err
    out = tmp_path / "c.json"
    assert main(base + ["--sigma", "0.5", "--images", "5", "--n0", "10", "--n", "100",
                        "--out", str(out), "--no-figure"]) == 0
    data = json.loads(out.read_text())
    assert data["settings"] == {"sigma": 0.5, "n0": 10, "n": 100, "alpha": 0.001,
                                "batch_size": 1000, "seed": 0}
    assert data["training_sigma"] == 0.25 and not out.with_suffix(".png").exists()


def test_certify_needs_sigma_for_a_run_not_trained_with_noise(mnist_root, mnist_run):
    from robustlab.certification.study import certify_run

    run = mnist_run  # tests/conftest.py: standard training; refused before anything is written
    with pytest.raises(ConfigError, match="--sigma: run .* was not trained with noise"):
        certify_run(str(run), images=2, data_dir=str(mnist_root), device="cpu")
