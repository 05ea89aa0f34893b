"""The test tiers (issue #33 item 7): `make test-fast` selects what is marked neither
integration, reference nor slow; a fast test cannot start a process; every test has a
timeout; the session's shared MNIST model is the run folder's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _pytest_ini() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


def test_a_fast_test_cannot_start_a_process():
    with pytest.raises(RuntimeError, match=r"test_a_fast_test_cannot_start_a_process started "
                                           r"a process .*mark the test @pytest.mark.integration"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    with pytest.raises(RuntimeError, match="os.system"):
        os.system("true")


@pytest.mark.integration
def test_an_integration_test_may_start_one():
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


def test_make_test_fast_leaves_out_every_tier_marker_and_markers_are_registered():
    make = (ROOT / "Makefile").read_text()
    fast = re.search(r"^test-fast:.*\n\t(.*)$", make, re.M).group(1)
    assert "-m 'not slow and not integration and not reference'" in fast
    assert re.search(r"^test: .*\n\t\$\(PY\) -m pytest -q \$\(PYTEST_ARGS\)$", make, re.M)
    ini = _pytest_ini()
    registered = {m.split(":")[0] for m in ini["markers"]}
    assert {"slow", "integration", "reference"} <= registered
    assert "--strict-markers" in ini["addopts"]  # a misspelt tier marker is an error


def test_every_test_has_a_timeout_of_at_most_two_minutes(request):
    assert 0 < int(_pytest_ini()["timeout"]) <= 120
    assert float(request.config.getini("timeout")) == float(_pytest_ini()["timeout"])


def test_the_shared_lenet_is_the_shared_run_model(mnist_run, mnist_lenet):
    import robustlab

    model, x, y = mnist_lenet
    again = robustlab.load_model(mnist_run, device="cpu")
    with torch.no_grad():
        assert torch.equal(again(x[:32]), model(x[:32]))
    assert not model.training and len(x) == len(y) == 1000
