"""One writer per result file (issue #32 item 5): two `robustlab evaluate` processes of one run
folder, or an `evaluate` of a run that a `robustlab train` process is still training. The
second process is refused at once with one line naming the holder's pid; the first one's
result survives. Real subprocesses; each first process waits at a gate (a file the test
creates) while it holds the lock, so the overlap does not depend on timing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustlab.cli import main

pytestmark = pytest.mark.integration  # real concurrent subprocesses

_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

# The first evaluate: the real CLI, whose attack phase waits for GATE/go once the run's lock
# is held (GATE/ready says it got there).
_GATED_EVALUATE = """
import sys, time
from pathlib import Path
from robustlab.evaluation import runs as E
gate = Path(sys.argv[1])
real = E._evaluate_plans
def gated(*args, **kwargs):
    (gate / "ready").write_text("")
    while not (gate / "go").exists():
        time.sleep(0.05)
    return real(*args, **kwargs)
E._evaluate_plans = gated
from robustlab.cli import main
sys.exit(main(sys.argv[2:]))
"""

# A `robustlab.train` process that stops after its first epoch until GATE/go exists.
_GATED_TRAIN = """
import sys, time
from pathlib import Path
import robustlab
gate, data, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
class Gate:
    def on_epoch(self, row):
        (gate / "ready").write_text("")
        while not (gate / "go").exists():
            time.sleep(0.05)
robustlab.train("lenet5", "mnist", data_dir=data, epochs=2, train_size=256, val_size=64,
                batch_size=64, threads=1, progress=False, out_dir=out, callbacks=[Gate()])
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mnist_run) -> Path:
    """A copy of the session's shared MNIST run (tests/conftest.py): evaluate writes into it."""
    return Path(shutil.copytree(mnist_run, tmp_path_factory.mktemp("runs") / "lenet"))


def _evaluate_args(run: Path, mnist_root: Path, eps: str) -> list[str]:
    return ["evaluate", str(run), "--eps", eps, "--attacks", "fgsm", "--n", "32", "--no-audit",
            "--no-curve", "--data-dir", str(mnist_root)]


def _start_gated(script: str, gate: Path, *args: str) -> subprocess.Popen:
    gate.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", script, str(gate), *args], env=_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (gate / "ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out, err = proc.communicate(timeout=10) if proc.poll() is not None else ("", "")
            proc.kill()
            pytest.fail(f"the first process never reached its gate: {proc.returncode} {err}")
        time.sleep(0.05)
    return proc


def _finish(proc: subprocess.Popen, gate: Path) -> subprocess.CompletedProcess:
    (gate / "go").write_text("")
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _second_evaluate(run: Path, mnist_root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustlab",
                           *_evaluate_args(run, mnist_root, "0.2"), *extra],
                          capture_output=True, text=True, timeout=120, env=_ENV)


def test_second_evaluate_of_one_run_is_refused_naming_the_holder(run_dir, mnist_root,
                                                                   tmp_path, capsys):
    gate = tmp_path / "gate"
    first = _start_gated(_GATED_EVALUATE, gate, *_evaluate_args(run_dir, mnist_root, "0.1"))
    try:
        second = _second_evaluate(run_dir, mnist_root, "--overwrite")
    finally:
        done = _finish(first, gate)
    assert second.returncode == 2, second.stdout + second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"pid {first.pid}" in lines[0] and "cannot evaluate run" in lines[0], lines
    assert "wrote" not in second.stdout
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["settings"]["eps"] == 0.1  # the first process's result, whole
    # the lock is released with the process: the second evaluation now runs (and, as ever,
    # replaces the file only with --overwrite)
    assert main(_evaluate_args(run_dir, mnist_root, "0.2")) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*_evaluate_args(run_dir, mnist_root, "0.2"), "--overwrite"]) == 0
    assert json.loads((run_dir / "eval.json").read_text())["settings"]["eps"] == 0.2


def test_evaluate_of_a_run_in_training_is_refused_naming_the_trainer(mnist_root, tmp_path):
    out = tmp_path / "training"
    gate = tmp_path / "gate"
    trainer = _start_gated(_GATED_TRAIN, gate, str(mnist_root), str(out))
    try:
        second = _second_evaluate(out, mnist_root)
    finally:
        done = _finish(trainer, gate)
    assert second.returncode == 2, second.stdout + second.stderr
    line = second.stderr.strip()
    assert "\n" not in line and f"pid {trainer.pid}" in line and "training" in line, line
    assert not (out / "eval.json").exists()
    assert done.returncode == 0, done.stderr
    assert (out / "summary.json").is_file()  # the training finished undisturbed


def test_a_run_given_twice_is_refused(run_dir, mnist_root, capsys):
    args = _evaluate_args(run_dir, mnist_root, "0.1")
    assert main([*args[:2], str(run_dir), *args[2:], "--overwrite"]) == 2
    assert "given twice" in capsys.readouterr().err
