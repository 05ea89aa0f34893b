"""The training loop, run folders, checkpoints and resume (real MNIST subsets)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from robustlab.runs.checkpoint import flatten_state, load_state, save_state, unflatten_state
from robustlab.training import ConfigError, RunFolderError, TrainConfig, train
from robustlab.training.lr_schedules import lr_factor


def small_cfg(root, out, **kw) -> TrainConfig:
    base = dict(dataset="mnist", model="lenet5", epochs=2, train_size=3000, val_size=500,
                data_dir=str(root), out_dir=str(out), progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


@pytest.mark.integration  # 2 epochs, 6,000 images
def test_short_run_learns_and_writes_the_run_folder(mnist_root, tmp_path):
    result = train(small_cfg(mnist_root, tmp_path / "run", train_size=6000, epochs=2))
    files = sorted(p.name for p in result.run_dir.iterdir())
    assert files == ["config.json", "metrics.jsonl", "model.safetensors", "summary.json"]
    assert result.summary["test_acc"] > 0.85  # 2 epochs on 6k images (measured 0.88)
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"train_loss", "train_acc", "val_acc", "epoch_time_s", "peak_mem_mb"} <= set(r)
        assert 0.0 <= r["train_acc"] <= 1.0 and 0.0 <= r["val_acc"] <= 1.0
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["train"]["seed"] == 0 and config["environment"]["torch"] == torch.__version__
    assert result.summary["train_time_s"] == pytest.approx(sum(r["epoch_time_s"] for r in rows))


@pytest.mark.integration  # three runs
def test_same_seed_same_weights_and_different_seed_differs(mnist_root, tmp_path):
    a = train(small_cfg(mnist_root, tmp_path / "a", epochs=1))
    b = train(small_cfg(mnist_root, tmp_path / "b", epochs=1))
    c = train(small_cfg(mnist_root, tmp_path / "c", epochs=1, seed=1))
    wa, wb, wc = (load_file(str(r.run_dir / "model.safetensors")) for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.integration  # four runs
def test_existing_run_is_never_overwritten_unless_asked(mnist_root, tmp_path):
    cfg = small_cfg(mnist_root, tmp_path / "run", epochs=1, train_size=500)
    first = train(cfg)
    before = (first.run_dir / "summary.json").read_text()
    with pytest.raises(RunFolderError, match="--resume.*--overwrite"):
        train(cfg)
    assert (first.run_dir / "summary.json").read_text() == before
    # resuming a complete run returns it untouched
    assert train(cfg, resume=True).summary == first.summary
    with pytest.raises(RunFolderError, match="different config.*lr"):
        train(cfg.replace(lr=0.1), resume=True)
    again = train(cfg.replace(seed=3), overwrite=True)
    assert again.summary["seed"] == 3


@pytest.mark.integration  # a killed subprocess
def test_resume_after_kill_is_bit_identical(mnist_root, tmp_path):
    """Kill a real `robustlab train` process mid-run, resume it, compare with an unbroken run."""
    killed = tmp_path / "killed"
    args = [sys.executable, "-m", "robustlab", "train", "--dataset", "mnist", "--model", "lenet5",
            "--epochs", "5", "--train-size", "6000", "--val-size", "500", "--device", "cpu",
            "--data-dir", str(mnist_root), "--out", str(killed), "--no-progress",
            "--recipe", "none", "--threads", "1"]  # the library runs below: the same config
    # (one thread in all three runs: `--threads auto` would follow the machine's load, and
    # two thread counts may sum a convolution's gradient in another order)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 600  # a loaded machine may need minutes for the first epoch
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert not (killed / "summary.json").exists()
    done_before_kill = metrics.read_text().count("\n")
    assert 1 <= done_before_kill < 5

    cfg = small_cfg(mnist_root, killed, epochs=5, train_size=6000, threads=1)
    resumed = train(cfg, resume=True)
    unbroken = train(cfg.replace(out_dir=str(tmp_path / "unbroken")))
    w1 = load_file(str(resumed.run_dir / "model.safetensors"))
    w2 = load_file(str(unbroken.run_dir / "model.safetensors"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert resumed.summary["test_acc"] == unbroken.summary["test_acc"]
    assert [m["train_loss"] for m in resumed.metrics] == [m["train_loss"] for m in unbroken.metrics]
    assert not (killed / "checkpoint.safetensors").exists()  # removed once complete


@pytest.mark.parametrize("change, field", [
    (dict(model="lenet6"), "model"), (dict(dataset="mnits"), "dataset"),
    (dict(method="magic"), "method"), (dict(eps=1.5), "eps"), (dict(eps=-0.1), "eps"),
    (dict(batch_size=0), "batch_size"), (dict(epochs=0), "epochs"), (dict(lr=0.0), "lr"),
    (dict(lr_schedule="warp"), "lr_schedule"), (dict(norm="l3"), "norm"),
    (dict(device="tpu9"), "device"), (dict(val_size=-1), "val_size"),
])
def test_invalid_config_names_the_field(change, field):
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        TrainConfig(**change).validate()


def test_unknown_config_field_and_config_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown field.*colour"):
        TrainConfig.from_dict({"colour": "red"})
    from robustlab.training import load_config_file

    toml = tmp_path / "c.toml"
    toml.write_text('[train]\ndataset = "fashion-mnist"\nepochs = 3\n'
                    '[train.method_options]\nsteps = 2\n')
    assert load_config_file(toml) == {"dataset": "fashion-mnist", "epochs": 3,
                                      "method_options": {"steps": 2}}
    yml = tmp_path / "c.yaml"
    yml.write_text("model: smallcnn\nlr: 0.05\n")
    assert load_config_file(yml) == {"model": "smallcnn", "lr": 0.05}
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.toml")


def test_state_round_trip_through_safetensors(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "epoch": 3, "metrics": [{"a": 0.5}],
             "method": {"alpha": 0.25, "history": (1, 2)}}
    tensors, skeleton = flatten_state(state)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    json.dumps(skeleton)  # the skeleton is plain JSON
    save_state(tmp_path / "s.safetensors", state)
    back = load_state(tmp_path / "s.safetensors")
    assert back["epoch"] == 3 and back["method"] == {"alpha": 0.25, "history": (1, 2)}
    buf = back["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(buf, opt.state_dict()["state"][0]["momentum_buffer"])
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(back["optimizer"])  # loads as a real optimizer state
    assert unflatten_state(tensors, skeleton)["metrics"] == [{"a": 0.5}]
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_state(tmp_path / "junk.safetensors")


def test_lr_schedules():
    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("cosine", 0.0) == 1.0 and lr_factor("cosine", 1.0) == pytest.approx(0.0)
    assert [lr_factor("step", p) for p in (0.1, 0.6, 0.9)] == [1.0, 0.1, 0.01]
    assert lr_factor("onecycle", 0.3) == pytest.approx(1.0) and lr_factor("onecycle", 1.0) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("dataset, target", [("mnist", 0.983), ("fashion-mnist", 0.84)])
def test_paper_defaults_reach_target_accuracy(dataset, target, mnist_root, tmp_path):
    root = mnist_root if dataset == "mnist" else None
    cfg = TrainConfig(dataset=dataset, model="lenet5", epochs=5, progress=False,
                      data_dir=str(root) if root else None, out_dir=str(tmp_path / dataset))
    assert train(cfg).summary["test_acc"] >= target


def test_install_does_not_pull_torchvision():
    with pytest.raises(ImportError):
        import torchvision  # noqa: F401


def test_host_memory_batches_equal_on_device_batches():
    """The pinned-host path (train split too large for the GPU) draws the same batches and the
    same augmentations as the on-device path; exercised on the CPU with a distinct device
    object so the host path runs."""
    from robustlab.data import ArraySplit, random_crop_flip
    from robustlab.runs.build import RunData, train_on_device

    g = torch.Generator().manual_seed(0)
    split = ArraySplit(torch.rand(50, 3, 8, 8, generator=g), torch.randint(0, 10, (50,)))
    kw = dict(val=split, test=split, info=None, batch_size=16, augment=random_crop_flip(2))
    plain = RunData(split, **kw)
    host = RunData(split, **kw, device=torch.device("cpu", 0))
    a = list(plain.batches(torch.Generator().manual_seed(3)))
    b = list(host.batches(torch.Generator().manual_seed(3)))
    assert len(a) == len(b) == 4
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert train_on_device(10**12, torch.device("cpu"))  # the CPU always holds its data
