"""Export (issue #16): a run or a module as TorchScript / ONNX, checked against the model's own
logits before the file is written; the TorchScript file evaluates like the run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import robustlab
from robustlab.cli import main
from robustlab.common.errors import ConfigError
from robustlab.runs.export import ExportError, export_model


@pytest.fixture(scope="module")
def run_dir(mnist_run):
    """The session's shared MNIST run (tests/conftest.py); export only reads it."""
    return mnist_run


@pytest.fixture(scope="module")
def test_images(mnist_splits):
    test = mnist_splits.test
    return test.x[:64], test.y[:64]


def test_torchscript_export_evaluates_like_the_run(run_dir, test_images, tmp_path):
    path = export_model(run_dir, tmp_path / "model.pt")
    x, y = test_images
    exported = torch.jit.load(str(path))
    model = robustlab.load_model(run_dir, device="cpu")
    with torch.no_grad():
        assert torch.allclose(exported(x), model(x), atol=1e-5)
    a = robustlab.evaluate(model, x, y, eps=0.1, attacks=["fgsm"])
    b = robustlab.evaluate(exported, x, y, eps=0.1, attacks=["fgsm"])
    assert torch.equal(a.correct["fgsm"], b.correct["fgsm"])


def test_onnx_export_matches_the_model(run_dir, test_images, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = export_model(run_dir, tmp_path / "model.onnx", format="onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = test_images[0][:7]  # a batch size the trace never saw: the batch axis is dynamic
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with torch.no_grad():
        assert torch.allclose(got, robustlab.load_model(run_dir, device="cpu")(x), atol=1e-4)


def test_cli_export_and_no_silent_overwrite(run_dir, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    assert out.is_file()
    before = out.read_bytes()
    assert main(["export", str(run_dir), "--out", str(out)]) != 0
    assert "exists" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["export", str(run_dir), "--out", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("fmt, name", [("torchscript", "m.pt"), ("onnx", "m.onnx")])
def test_overwrite_replaces_only_an_exported_model(run_dir, tmp_path, capsys, fmt, name):
    """--overwrite replaces a TorchScript / ONNX file an export wrote, never a user's file or
    a folder: one line, the file untouched."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / name
    out.write_text("my notes\n")
    assert main(["export", str(run_dir), "--out", str(out), "--format", fmt,
                 "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "robustlab export: error:" in err
    assert "refusing to replace it" in err and out.read_text() == "my notes\n"
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    assert main(["export", str(run_dir), "--out", str(folder), "--format", fmt,
                 "--overwrite"]) == 2
    assert "is a folder" in capsys.readouterr().err and folder.is_dir()
    out.unlink()
    assert main(["export", str(run_dir), "--out", str(out), "--format", fmt]) == 0
    assert main(["export", str(run_dir), "--out", str(out), "--format", fmt,
                 "--overwrite"]) == 0


class _Branchy(nn.Module):
    """Python control flow on the data: a trace freezes one branch, so the export differs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc(x.flatten(1))
        return z if float(x[0].mean()) > 0.5 else -z


def test_an_export_that_changes_the_logits_is_not_written(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ExportError, match="logits up to"):
        export_model(_Branchy(), tmp_path / "b.pt", input_shape=(1, 2, 2))
    assert list(tmp_path.iterdir()) == []  # no file, no leftover temporary


def test_bad_calls_are_named(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="format: expected one of torchscript, onnx"):
        export_model(net, tmp_path / "a", format="tflite", input_shape=(1, 2, 2))
    with pytest.raises(ConfigError, match="input_shape"):
        export_model(net, tmp_path / "a.pt")
    with pytest.raises(ConfigError, match=r"input_shape\[1\]"):
        export_model(net, tmp_path / "a.pt", input_shape=(1, 0, 2))
    export_model(net, tmp_path / "ok.pt", input_shape=(1, 2, 2))
