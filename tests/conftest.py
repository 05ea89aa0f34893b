"""Shared test fixtures. Real-data tests skip locally without data but FAIL in CI (never skip)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


def _require_data() -> bool:
    return bool(os.environ.get("ROBUSTLAB_REQUIRE_DATA") or os.environ.get("CI"))


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Folder holding real MNIST (ROBUSTLAB_DATA, or ../shared/data beside the checkout)."""
    candidates = [os.environ.get("ROBUSTLAB_DATA"),
                  str(Path(__file__).resolve().parents[2] / "shared" / "data")]
    for c in candidates:
        if c and (Path(c) / "mnist" / "train-images-idx3-ubyte.gz").is_file():
            return Path(c)
    if _require_data():
        pytest.fail(f"real MNIST not found in {candidates} (required in CI)")
    pytest.skip("real MNIST not available")


@pytest.fixture(scope="session")
def fashion_root() -> Path:
    root = Path("/usr/share/datasets/fashion-mnist")
    if (root / "train-images-idx3-ubyte.gz").is_file():
        return root
    if _require_data():
        pytest.fail(f"Fashion-MNIST not found in {root} (apt-get install dataset-fashion-mnist)")
    pytest.skip("Fashion-MNIST not available")


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test that changes torch's thread count must not change the numerics of the tests
    after it (a resumed run compared bit for bit with a subprocess's epochs): restored here."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _idle_load_average(monkeypatch):
    """`--threads auto` reads the load average and, when it is high (as it always is while
    tests run), watches the CPUs for 50 ms: hundreds of in-process CLI calls would wait for it,
    and the thread count would follow the machine's load. Here the load average reads 0, so
    auto picks every core (torch's own default), the same in every run; tests of the policy
    pass their own `Machine` or patch this themselves."""
    import robustlab.common.threads as threads

    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread is much faster (and fair to a shared 2-core machine);
    `_restore_torch_threads` puts the count back afterwards."""
    torch.set_num_threads(1)
