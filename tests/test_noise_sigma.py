"""`noise_sigma` (issue #18): Gaussian noise on every training batch, for any method, the noise
randomized smoothing certifies with."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import robustlab
from robustlab.common.errors import ConfigError
from robustlab.data import load_dataset
from robustlab.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


class RecordingNet(nn.Module):
    """A linear classifier that keeps every input it sees in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("value, expected", [
    (-0.1, "noise_sigma: expected a noise std >= 0"), (float("nan"), "noise_sigma"),
    (True, "noise_sigma"), ("0.25", "noise_sigma")])
def test_bad_noise_sigma_is_named_before_any_compute(value, expected):
    with pytest.raises(ConfigError, match=expected):
        TrainConfig(noise_sigma=value).validate()


def test_gaussian_aug_with_noise_sigma_is_refused():
    with pytest.raises(ConfigError, match="noise_sigma: method 'gaussian-aug' adds its own"):
        TrainConfig(method="gaussian-aug", noise_sigma=0.25).validate()


def _grey_data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((n, 1, 28, 28), 0.5), torch.arange(n) % 10


@pytest.mark.parametrize("method, extra", [("standard", {}), ("pgd-at", {"eps": 0.05})])
def test_every_training_batch_gets_noise_of_sigma(tmp_path, method, extra):
    """Constant grey images: what the model sees in training deviates from 0.5 by the noise
    (std 0.1, unclipped tails) plus, for PGD-AT, a perturbation of at most eps around the
    noisy image (sqrt(0.1^2 + eps^2) bounds the std)."""
    net = RecordingNet()
    robustlab.train(net, _grey_data(), method=method, noise_sigma=0.1, epochs=1, batch_size=64,
                    val_size=0, threads=1, progress=False, out_dir=tmp_path / method,
                    recipe="none", **({"method_options": {"steps": 2}} if extra else {}), **extra)
    noise = torch.cat(net.seen) - 0.5
    if method == "standard":
        assert noise.std().item() == pytest.approx(0.1, abs=0.002)
    else:
        assert 0.1 < noise.std().item() < math.hypot(0.1, 0.05)
    assert noise.abs().max().item() > 0.4  # Gaussian tails (> 4 sigma), not uniform noise


def test_no_noise_by_default(tmp_path):
    net = RecordingNet()
    robustlab.train(net, _grey_data(), epochs=1, batch_size=64, val_size=0, threads=1,
                    progress=False, out_dir=tmp_path / "clean", recipe="none")
    assert all(torch.equal(x, torch.full_like(x, 0.5)) for x in net.seen)


def test_same_seed_same_noise_same_weights(tmp_path):
    nets = []
    for name in ("a", "b"):
        torch.manual_seed(0)
        net = RecordingNet()
        robustlab.train(net, _grey_data(), noise_sigma=0.2, epochs=2, batch_size=64,
                        val_size=0, threads=1, progress=False, out_dir=tmp_path / name,
                        recipe="none")
        nets.append(net)
    pairs = zip(nets[0].parameters(), nets[1].parameters(), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs)


def _noisy_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float) -> float:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        noisy = x + sigma * torch.randn(x.shape, generator=gen)
        return (model.eval()(noisy).argmax(1) == y).float().mean().item()


@pytest.mark.integration  # two training runs
def test_noise_trained_model_is_better_under_noise_and_certify_reads_its_sigma(mnist_root,
                                                                               tmp_path):
    """Real MNIST: training with noise_sigma 0.4 makes LeNet-5 more accurate on inputs with
    that noise than the same training without it; `certify` then defaults to sigma 0.4."""
    from robustlab.certification.study import plan_certify

    mnist = load_dataset("mnist", mnist_root)
    xt, yt = mnist.test.x[:500], mnist.test.y[:500]
    acc = {}
    for sigma in (0.0, 0.4):
        result = robustlab.train("lenet5", "mnist", noise_sigma=sigma, epochs=2,
                                 train_size=3000, val_size=200, batch_size=64, lr=0.05,
                                 recipe="none", data_dir=str(mnist_root), threads=1,
                                 progress=False, out_dir=tmp_path / f"s{sigma}")
        acc[sigma] = _noisy_accuracy(result.model, xt, yt, 0.4)
    assert acc[0.4] > acc[0.0] + 0.1, acc
    settings, _, trained = plan_certify(str(tmp_path / "s0.4"), sigma=None, images=10,
                                        out=None, overwrite=False)
    assert trained == 0.4 and math.isclose(settings.sigma, 0.4)
