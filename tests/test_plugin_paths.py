"""Files next to the user are importable (issue #37.4): `--plugin my_plugin` run from the folder
holding my_plugin.py, `--plugin ./file.py`, ROBUSTLAB_PLUGINS=file.py, and a `--model`
factory file importing its sibling and a module of the working directory -- all without
PYTHONPATH, through the installed `robustlab` script (whose sys.path does not hold the working
directory). Every failure is one line naming the module or file and the exception (#32.12,
#37.5). The successful imports run in subprocesses (started together), so this process's
registries stay as robustlab ships them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustlab.cli import main

pytestmark = pytest.mark.integration  # the robustlab command in subprocesses

MLP = '''
from torch import nn

from robustlab.models.normalize import Normalize
from robustlab.registry import MODELS


def mlp(*, num_classes, in_channels, mean, std, image_size):
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    return nn.Sequential(Normalize(mean, std), nn.Flatten(),
                         nn.Linear(in_channels * h * w, num_classes))
'''
FILES = {
    # imported by name from the working directory; imports a sibling module by name
    "my_plugin.py": "from plugin_helpers import NAME\n" + MLP + "\nMODELS.register(NAME)(mlp)\n",
    "plugin_helpers.py": 'NAME = "cwd-mlp"\n',
    # imported by path; its sibling lives in its own folder, not in the working directory
    "sub/other.py": "from other_helpers import NAME\n" + MLP + "\nMODELS.register(NAME)(mlp)\n",
    "sub/other_helpers.py": 'NAME = "path-mlp"\n',
    "third.py": MLP + '\nMODELS.register("env-mlp")(mlp)\n',
    # a model file importing its sibling (models/blocks.py) and a module of the cwd
    "models/net.py": ("from blocks import head\nfrom netconfig import CLASSES\n\n\n"
                      "def make():\n    return head(CLASSES)\n\n\n"
                      "def make_wide():\n    return head(CLASSES + 3)\n\n\n"
                      "def make_sized(num_classes):\n    return head(num_classes)\n"),
    "models/blocks.py": ("from torch import nn\n\n\ndef head(k):\n"
                         "    return nn.Sequential(nn.Flatten(), nn.Linear(784, k))\n"),
    "netconfig.py": "CLASSES = 10\n",
    "bad_plugin.py": "import math\nraise ValueError(f'boom {math.pi:.2f}')\n",
}
EVAL = ["evaluate", "--dataset", "synthetic", "--eps", "0.1", "--attacks", "fgsm", "--n", "8",
        "--no-audit", "--no-curve", "--no-progress"]
RUNS = {
    "plugins": (["--plugin", "my_plugin", "--plugin", "./sub/other.py", "list", "models"],
                {"ROBUSTLAB_PLUGINS": "third.py"}),
    "model": ([*EVAL, "--model", "models/net.py:make", "--out", "net.json"], {}),
    "bad-plugin": (["--plugin", "bad_plugin", "list", "models"], {}),
    "wide": ([*EVAL, "--model", "models/net.py:make_wide", "--out", "wide.json"], {}),
    "needs-arg": ([*EVAL, "--model", "models/net.py:make_sized", "--out", "sized.json"], {}),
}


def _command() -> list[str]:
    script = Path(sys.executable).parent / "robustlab"
    # -P: like the installed script, python does not put the working directory on sys.path
    return [str(script)] if script.is_file() else [sys.executable, "-P", "-m", "robustlab"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess]]:
    """Every command of RUNS, in a fresh folder holding FILES, started at once."""
    folder = tmp_path_factory.mktemp("user")
    for name, text in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROBUSTLAB_PLUGINS")}
    env["OMP_NUM_THREADS"] = "1"
    procs = {key: subprocess.Popen([*_command(), *args], cwd=folder, env={**env, **extra},
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for key, (args, extra) in RUNS.items()}
    done = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        done[key] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return folder, done


def _one_error_line(run: subprocess.CompletedProcess, command: str) -> str:
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert run.stderr.startswith(f"robustlab {command}: error: "), run.stderr
    return run.stderr


def test_plugins_by_name_from_the_cwd_by_path_and_from_the_environment(runs):
    _, done = runs
    run = done["plugins"]
    assert run.returncode == 0, run.stderr
    for name in ("cwd-mlp", "path-mlp", "env-mlp"):
        assert name in run.stdout


def test_model_file_imports_its_sibling_and_the_cwd(runs):
    folder, done = runs
    assert done["model"].returncode == 0, done["model"].stderr
    assert (folder / "net.json").is_file()


def test_plugin_that_raises_is_one_line(runs):
    err = _one_error_line(runs[1]["bad-plugin"], "list")
    assert "--plugin: plugin module 'bad_plugin' failed while being imported: ValueError: " \
           "boom 3.14 (" in err and "bad_plugin.py:2)" in err


def test_wrong_number_of_outputs_and_factory_arguments_are_one_line(runs):
    folder, done = runs
    err = _one_error_line(done["wide"], "evaluate")
    assert "model output: 13 logits per image, but the data has 10 classes" in err
    err = _one_error_line(done["needs-arg"], "evaluate")
    assert "make_sized() needs the argument(s) num_classes" in err
    assert not (folder / "wide.json").exists() and not (folder / "sized.json").exists()


# ------------------------------------------- failures before anything registers: in-process
@pytest.mark.parametrize(("files", "plugin", "message"), [
    ({}, "./nope.py", "--plugin: plugin file nope.py not found (looked in "),
    ({"syn_plugin_x.py": "x = (\n"}, "syn_plugin_x",
     "--plugin: plugin module 'syn_plugin_x' failed while being imported: SyntaxError: "),
    ({"syn_plugin_y.py": "def f(:\n"}, "./syn_plugin_y.py",
     "--plugin: plugin file syn_plugin_y.py failed while being imported: SyntaxError: "),
    ({"dep_plugin_z.py": "import not_installed_pkg_q\n"}, "dep_plugin_z",
     "--plugin: cannot import plugin module 'dep_plugin_z': No module named "
     "'not_installed_pkg_q'"),
    ({"rt_plugin_w.py": "\n\nraise RuntimeError('no GPU here')\n"}, "rt_plugin_w.py",
     "--plugin: plugin file rt_plugin_w.py failed while being imported: RuntimeError: no GPU "
     "here ("),
    ({}, "./json.py", "a different module named 'json' is already imported"),
])
def test_plugin_failures_are_one_line(tmp_path, monkeypatch, capsys, files, plugin, message):
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    if plugin == "./json.py":
        (tmp_path / "json.py").write_text("")
    before = list(sys.path)
    assert main(["--plugin", plugin, "list", "models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustlab list: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sys.path == before  # the user's folders were on sys.path only during the import
