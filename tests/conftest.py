"""Shared test fixtures. Real-data tests skip locally without data but FAIL in CI (never skip).

Expensive things are built once per test session and shared (read-only): `mnist_splits`,
`mnist_run` (a LeNet-5 run folder on real MNIST; `mnist_run_copy` for a test that writes into
it), `mnist_lenet` (its model and 1,000 test images) and `smoke_experiment` (the output of
`reproduce --preset smoke`). Test tiers (markers registered in pyproject.toml): `make test-fast`
runs what is marked neither `integration`, `reference` nor `slow`."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

# ------------------------------------------------------------------- the fast test tier
TIER_MARKERS = ("integration", "reference", "slow")  # left out of `make test-fast`
SPAWN_EVENTS = ("subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.system")
# What libraries run to describe the machine: a run's commit and platform (config.json), the
# C library search of ctypes.util.find_library. Any other process fails a fast test.
ENVIRONMENT_PROBES = ("git", "uname", "ldconfig")
_fast_test: list[str] = []  # the node id of the running fast-tier test, if any


def spawn_refusal(event: str, args: tuple) -> str | None:
    """Why a fast-tier test may not do audit `event` (None: it may): ENVIRONMENT_PROBES are
    allowed."""
    if event not in SPAWN_EVENTS:
        return None
    argv = args[1] if event == "subprocess.Popen" else args
    if (event == "subprocess.Popen" and isinstance(argv, (list, tuple)) and argv
            and os.path.basename(str(argv[0])) in ENVIRONMENT_PROBES):
        return None
    return (f"{_fast_test[0] if _fast_test else 'a fast test'} started a process ({event} "
            f"{argv!r:.80}): `make test-fast` starts none; mark the test "
            "@pytest.mark.integration (tests/conftest.py)")


def _refuse_spawns_in_fast_tests(event: str, args: tuple) -> None:
    if _fast_test and event in SPAWN_EVENTS:
        reason = spawn_refusal(event, args)
        if reason:
            raise RuntimeError(reason)


sys.addaudithook(_refuse_spawns_in_fast_tests)


SLOW_TIMEOUT_S = 1800  # a `slow` test without its own @pytest.mark.timeout (make test-slow)


def pytest_collection_modifyitems(config, items):
    """Every test has pyproject.toml's timeout (120 s) unless it says otherwise; `slow` ones
    (runs of up to ~10 minutes, outside `make test`) get SLOW_TIMEOUT_S."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """While a test of the fast tier (no TIER_MARKERS) sets up, runs and tears down, starting
    a process fails it: the tier's promise is checked, not only declared."""
    if not any(item.get_closest_marker(m) for m in TIER_MARKERS):
        _fast_test.append(item.nodeid)
    try:
        yield
    finally:
        _fast_test.clear()


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


# ------------------------------------------------------------- shared models, built once
MNIST_RUN_TRAIN = dict(dataset="mnist", model="lenet5", epochs=1, train_size=30_000,
                       val_size=1000, batch_size=64, optimizer="adam", lr=2e-3,
                       weight_decay=0.0, seed=0, recipe="none", progress=False, device="cpu",
                       threads=1)
MNIST_LENET_TEST_IMAGES = 1_000


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def mnist_splits(mnist_root):
    """Real MNIST as `load_dataset("mnist")` gives it (the dataset's own validation split).
    Shared by every test: slice or clone it, never write into its tensors."""
    from robustlab.data import load_dataset

    return load_dataset("mnist", root=mnist_root)


@pytest.fixture(scope="session")
def mnist_run(mnist_root, tmp_path_factory) -> Path:
    """A finished run folder: LeNet-5, 1 epoch of Adam over 30,000 real MNIST images (batch 64,
    no weight decay, seed 0: 97.2% test accuracy, ~6 s on one thread), trained once per
    session. Its config.json records no data_dir (as a run trained with ROBUSTLAB_DATA set):
    pass `data_dir=mnist_root` (`--data-dir`) to what reads its data. READ-ONLY: a test that
    writes into a run (evaluate, certify, --resume, edits) takes `mnist_run_copy`; the session
    fails at its end if a file here changed."""
    from robustlab.training import TrainConfig, train

    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("shared") / "mnist-lenet5-standard-s0"
    try:
        with pytest.MonkeyPatch.context() as mp:  # no data_dir in config.json: see above
            mp.setenv("ROBUSTLAB_DATA", str(mnist_root))
            result = train(TrainConfig(**MNIST_RUN_TRAIN, out_dir=str(out)))
    finally:
        torch.set_num_threads(before)
    assert result.summary["health"] == "ok"
    digests = _digests(out)
    yield out
    changed = sorted(set(digests.items()) ^ set(_digests(out).items()))
    assert not changed, (f"a test wrote into the shared run {out} ({changed[0][0]}); "
                         "use the mnist_run_copy fixture")


@pytest.fixture
def mnist_run_copy(mnist_run, tmp_path) -> Path:
    """A private copy of `mnist_run` (tmp_path/run) that the test may change."""
    return Path(shutil.copytree(mnist_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def mnist_lenet(mnist_run, mnist_splits):
    """(`mnist_run`'s LeNet-5 in eval mode, x_test[:1000] `[1000, 1, 28, 28]`, y_test[:1000]).
    Test accuracy >= 97% (asserted). Shared: a test must not change its weights."""
    import robustlab

    model = robustlab.load_model(mnist_run, device="cpu")
    for p in model.parameters():
        p.requires_grad_(True)
    n = MNIST_LENET_TEST_IMAGES
    x, y = mnist_splits.test.x[:n], mnist_splits.test.y[:n]
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc >= 0.97, f"the shared LeNet-5 reached only {acc:.4f} test accuracy"
    return model, x, y


# ----------------------------------------------------------- the smoke pipeline, run once
@pytest.fixture(scope="session")
def smoke_experiment(tmp_path_factory) -> tuple[Path, Path]:
    """(folder, report.html) of `reproduce --preset smoke` (one worker, one thread), run once
    per session. READ-ONLY: copy it (`shutil.copytree`) to rerun or change it."""
    from robustlab.experiments.presets import get_preset
    from robustlab.experiments.runner import reproduce

    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("smoke")
    try:
        html = reproduce(get_preset("smoke"), out, workers=1, threads=1)
    finally:
        torch.set_num_threads(before)
    return out, html
