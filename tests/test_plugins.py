"""User plugins: `--plugin MODULE` and `ROBUSTLAB_PLUGINS` make a user's registered components
nameable in every command. Run in subprocesses so the registries of this test process stay as
robustlab ships them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # the robustlab command in subprocesses

PLUGIN = '''
from torch import nn

from robustlab.models.normalize import Normalize
from robustlab.registry import MODELS


@MODELS.register("plugin-mlp")
def plugin_mlp(*, num_classes, in_channels, mean, std, image_size):
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    return nn.Sequential(Normalize(mean, std), nn.Flatten(),
                         nn.Linear(in_channels * h * w, num_classes))
'''


def _robustlab(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "user_plugin.py").write_text(PLUGIN)
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-m", "robustlab", *args], capture_output=True,
                          text=True, env=full_env, timeout=300)


def test_plugin_model_is_listed_and_trains(tmp_path):
    out = _robustlab(["--plugin", "user_plugin", "list", "models"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "plugin-mlp" in out.stdout
    run = tmp_path / "run"
    out = _robustlab(["--plugin", "user_plugin", "train", "--dataset", "synthetic",
                      "--model", "plugin-mlp", "--epochs", "1", "--set",
                      "dataset_options={n_train: 64, n_test: 16}", "--no-progress",
                      "--out", str(run)], tmp_path)
    assert out.returncode == 0, out.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_done"] == 1 and 0.0 <= summary["test_acc"] <= 1.0


def test_plugins_from_the_environment(tmp_path):
    out = _robustlab(["list", "models"], tmp_path, ROBUSTLAB_PLUGINS="user_plugin")
    assert out.returncode == 0, out.stderr
    assert "plugin-mlp" in out.stdout
    assert "plugin-mlp" not in _robustlab(["list", "models"], tmp_path).stdout


def test_missing_plugin_is_one_clear_line(tmp_path):
    out = _robustlab(["--plugin", "no_such_plugin_module", "list"], tmp_path)
    assert out.returncode == 2
    assert "--plugin: cannot import plugin module 'no_such_plugin_module'" in out.stderr
    assert "Traceback" not in out.stderr
