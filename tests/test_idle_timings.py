"""bench/idle_timings.sh refuses, before anything runs, a busy machine and an output folder
that already holds files (an earlier run's are never overwritten)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # runs the script in a subprocess (tests/conftest.py)

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "idle_timings.sh"


def _run(out: Path, max_load: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "MAX_LOAD": max_load, "PY": "/bin/false"}
    return subprocess.run(["bash", str(SCRIPT), "awp"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=SCRIPT.parents[1])


def test_a_folder_holding_files_is_refused_and_left_as_it_was(tmp_path):
    out = tmp_path / "timings"
    out.mkdir()
    (out / "awp.txt").write_text("an earlier run's figures\n")
    done = _run(out, max_load="1000")
    assert done.returncode == 2
    assert str(out) in done.stderr and "never overwritten" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["awp.txt"]
    assert (out / "awp.txt").read_text() == "an earlier run's figures\n"


def test_a_busy_machine_is_refused_before_the_folder_is_made(tmp_path):
    out = tmp_path / "timings"
    done = _run(out, max_load="-1")  # any load average is above -1
    assert done.returncode == 2 and "load average" in done.stderr
    assert not out.exists()
