"""CUDA code paths (run by bench/gpu_check.sh on a GPU machine; skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

import robustlab.attacks
from robustlab.models import create_model
from robustlab.training import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SYN = dict(n_train=2000, n_test=300, channels=3, image_size=32, num_classes=10)


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_gpu_training_learns_with_amp_and_channels_last(amp, tmp_path):
    cfg = TrainConfig(dataset="synthetic", dataset_options=SYN, model="resnet18", epochs=2,
                      amp=amp, device="cuda", progress=False, out_dir=str(tmp_path / amp),
                      memory_format="channels_last", lr=0.05)
    result = train(cfg)
    assert result.summary["test_acc"] > 0.5
    assert result.metrics[-1]["peak_mem_mb"] > 0


def test_gpu_hybrid_bf16_logs_schedule(tmp_path):
    cfg = TrainConfig(dataset="synthetic", dataset_options=SYN, model="resnet18", epochs=2,
                      method="hybrid", eps=8 / 255, amp="bf16", device="cuda", progress=False,
                      out_dir=str(tmp_path / "h"), val_size=200)
    metrics = train(cfg).metrics
    assert metrics[0]["eps"] < metrics[-1]["eps"] <= 8 / 255 + 1e-9
    assert 0.0 <= metrics[-1]["alpha"] <= 1.0


@pytest.mark.parametrize("amp", [False, True])
def test_gpu_pgd_stays_in_ball_and_on_device(amp):
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_channels=3, mean=(0.5,) * 3,
                         std=(0.25,) * 3, image_size=32).cuda().eval()
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(64, 3, 32, 32, device="cuda")
    y = model(x).argmax(1)
    attack = robustlab.attacks.create("pgd", eps=8 / 255, steps=10, step_size=2 / 255, seed=0)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        x_adv = attack(model, x, y)
    assert x_adv.device == x.device and x_adv.dtype == torch.float32
    assert (x_adv - x).abs().max().item() <= 8 / 255 + 1e-6
    assert 0.0 <= x_adv.min().item() and x_adv.max().item() <= 1.0
    assert (model(x_adv).argmax(1) == y).float().mean().item() < 0.5


def test_gpu_compiled_training_saves_plain_weights(tmp_path):
    cfg = TrainConfig(dataset="synthetic", dataset_options=SYN, model="resnet18", epochs=1,
                      amp="bf16", device="cuda", progress=False, out_dir=str(tmp_path / "c"),
                      compile=True, lr=0.05)
    result = train(cfg)
    assert result.summary["test_acc"] > 0.3
    from safetensors import safe_open

    with safe_open(str(result.run_dir / "model.safetensors"), framework="pt") as fh:
        assert not any(k.startswith("_orig_mod") for k in fh.keys())


def test_gpu_training_from_pinned_host_memory_matches_device_data(tmp_path, monkeypatch):
    """A training split too large for the GPU stays in pinned host memory, batches copied
    asynchronously; the run sees the same batches as with the split on the device."""
    import robustlab.runs.build as setup

    def run(name):
        cfg = TrainConfig(dataset="synthetic", dataset_options=SYN, model="lenet5", epochs=1,
                          device="cuda", progress=False, out_dir=str(tmp_path / name), lr=0.05,
                          augment="crop-flip")
        return train(cfg).summary

    on_device = run("device")
    monkeypatch.setattr(setup, "DEVICE_DATA_SHARE", 0.0)  # nothing "fits": pinned host path
    data = setup.load_run_data(TrainConfig(dataset="synthetic", dataset_options=SYN,
                                           model="lenet5", device="cuda"),
                               torch.device("cuda"))
    assert data.train.x.device.type == "cpu" and data.train.x.is_pinned()
    assert data.val.x.is_cuda
    pinned = run("pinned")
    assert pinned["test_acc"] == pytest.approx(on_device["test_acc"], abs=0.02)
