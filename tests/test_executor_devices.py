"""`reproduce --device LIST --workers N`: device lists and their errors, N workers per device,
dynamic scheduling over spawned workers pinned to their device, and the same numbers whichever
worker ran a job (CPU)."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest
import torch

from robustlab.common.errors import ConfigError
from robustlab.experiments.devices import (
    CUDA_THREADS,
    DeviceListError,
    Worker,
    check_ray_devices,
    parse_devices,
    placed_train,
    plan_workers,
)
from robustlab.experiments.executors import WorkerDiedError, run_on_workers

# --- device lists -------------------------------------------------------------------------

def test_device_lists_parse():
    assert parse_devices("cpu") == ("cpu",)
    assert parse_devices(" auto ") == ("auto",)


@pytest.mark.parametrize("spec, message", [
    ("", "expected a device or a comma list"),
    ("cpu,", "empty entry in 'cpu,'"),
    ("gpu", "expected 'auto', 'cpu', 'cuda' or 'cuda:N'.*got 'gpu'"),
    ("cuda:0,tpu", "got 'tpu'"),
    ("cpu,cpu", "'cpu' is listed twice"),
    ("cuda,cuda:0", "'cuda' is listed twice"),
    ("cuda:1,cuda:1", "'cuda:1' is listed twice"),
    ("auto,cpu", "'auto' picks one device and stands alone"),
    ("cpu,cuda:0", "mixes cpu and cuda"),
])
def test_bad_device_lists_name_the_flag_and_value(spec, message):
    with pytest.raises(DeviceListError, match=message) as info:
        parse_devices(spec)
    assert isinstance(info.value, ConfigError) and str(info.value).startswith("--device: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda_is_the_device_error():
    for spec in ("cuda", "cuda:0,cuda:1"):
        with pytest.raises(DeviceListError, match="CUDA is not available here"):
            parse_devices(spec)


def test_ray_takes_one_entry_without_a_card_number():
    check_ray_devices(("cuda",))
    check_ray_devices(("cpu",))
    for devices in (("cuda:0",), ("cuda:0", "cuda:1")):
        with pytest.raises(DeviceListError, match="Ray gives each task its own GPU"):
            check_ray_devices(devices)


# --- workers per device --------------------------------------------------------------------

def test_workers_are_per_device_interleaved_with_their_threads():
    pool = plan_workers(("cuda:0", "cuda:1"), 3, cores=16)
    assert [w.index for w in pool] == list(range(6))
    assert [w.device for w in pool] == ["cuda:0", "cuda:1"] * 3
    assert {w.threads for w in pool} == {CUDA_THREADS}  # 16 // 6 = 2 capped at 2
    assert {w.config_device for w in pool} == {"cuda"}  # run folders do not name the card
    assert [w.cuda_index for w in pool[:2]] == [0, 1]
    cpu = plan_workers(("cpu",), 4, cores=16)
    assert len(cpu) == 4 and {w.threads for w in cpu} == {4}
    assert plan_workers(("cpu",), 4, cores=2)[0].threads == 1
    assert plan_workers(("cuda:0",), 1, cores=16)[0].threads == CUDA_THREADS
    assert plan_workers(("cuda:0",), 1, threads=8, cores=16)[0].threads == 8
    with pytest.raises(DeviceListError, match="--workers: expected an integer >= 1, got 0"):
        plan_workers(("cpu",), 0)
    with pytest.raises(DeviceListError, match="--threads: expected an integer >= 1"):
        plan_workers(("cpu",), 1, threads=0)


def test_placed_train_sets_the_workers_device_kind_and_threads():
    train = {"device": "cuda", "threads": 2, "seed": 0}
    assert placed_train(train, Worker(3, "cuda:1", 1)) == {"device": "cuda", "threads": 1,
                                                           "seed": 0}
    assert placed_train(train, Worker(0, "cpu", 4))["device"] == "cpu"
    assert placed_train(train, None) is train
    assert placed_train(train, Worker(0, None, 4)) is train


def test_reproduce_rejects_bad_devices_before_compute(tmp_path):
    from robustlab.experiments.presets import get_preset
    from robustlab.experiments.runner import reproduce

    smoke = get_preset("smoke")
    with pytest.raises(DeviceListError, match="listed twice"):
        reproduce(smoke, tmp_path / "a", device="cpu,cpu")
    with pytest.raises(DeviceListError, match="--threads"):
        reproduce(smoke, tmp_path / "b", device="cpu", threads=-1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_reproduce_takes_device_lists():
    from robustlab.cli import build_parser, main

    args = build_parser().parse_args(["reproduce", "--preset", "smoke", "--device",
                                      "cuda:0,cuda:1", "--workers", "4"])
    assert args.device == "cuda:0,cuda:1" and args.workers == 4
    assert main(["reproduce", "--preset", "smoke", "--device", "cpu,gpu"]) == 2


# --- dynamic scheduling in pinned worker processes -----------------------------------------

def _sleep_job(job: tuple[str, float], worker: Worker) -> str:
    """A fake job: sleeps, then says which process, worker and device ran it."""
    time.sleep(job[1])
    return json.dumps({"pid": os.getpid(), "worker": worker.index, "device": worker.device,
                       "threads": torch.get_num_threads()})


def _failing_job(job: str, worker: Worker) -> str:
    if job == "bad":
        raise ConfigError("lr: expected a number > 0, got -1")
    return "ok"


def _dying_job(job: str, worker: Worker) -> str:
    os._exit(3)


def _run(jobs, fn, pool):
    done = []
    run_on_workers("local", jobs, fn, lambda i, job, line, w: done.append((i, job, line, w)),
                   pool)
    return done


@pytest.mark.integration  # worker processes
def test_a_free_worker_takes_the_next_job():
    """One long job then many short ones on 2 workers: the worker with the long job runs
    fewer jobs (round-robin would give it half); every worker is its own process with its
    device and thread count, and every job is reported once, counted 1..N."""
    jobs = [("long", 2.5)] + [(f"short{i}", 0.1) for i in range(6)]
    pool = plan_workers(("cpu",), 2, threads=1)
    done = _run(jobs, _sleep_job, pool)
    assert [d[0] for d in done] == list(range(1, len(jobs) + 1))
    assert sorted(d[1] for d in done) == sorted(jobs)
    seen = {d[1][0]: json.loads(d[2]) for d in done}
    for (_, _, _, w), d in zip(done, [seen[x[1][0]] for x in done], strict=True):
        assert d["worker"] == w.index and d["device"] == "cpu" and d["threads"] == 1
    assert len({d["pid"] for d in seen.values()}) == 2 and os.getpid() not in {
        d["pid"] for d in seen.values()}
    long_worker = seen["long"]["worker"]
    counts = [sum(d["worker"] == w for d in seen.values()) for w in (0, 1)]
    assert counts[long_worker] < counts[1 - long_worker]
    assert done[-1][1][0] == "long"  # the short jobs all finished while it ran


def test_one_worker_runs_in_this_process():
    done = _run([("a", 0.0)], _sleep_job, [Worker(0, "cpu", None)])
    assert json.loads(done[0][2])["pid"] == os.getpid()


@pytest.mark.integration  # worker processes
def test_a_jobs_error_and_a_dead_worker_stop_the_grid():
    pool = plan_workers(("cpu",), 2, threads=1)
    with pytest.raises(ConfigError, match="lr: expected a number > 0"):
        _run(["ok", "bad", "ok"], _failing_job, pool)
    with pytest.raises(WorkerDiedError, match=r"worker \d \(cpu\) ended with exit code 3 "
                                              r"while running"):
        _run(["a", "b"], _dying_job, pool)


# --- the same numbers whichever worker ran a job --------------------------------------------

def _tiny_preset():
    from robustlab.experiments.presets import DatasetPlan, EvalPlan, MethodPlan, get_preset

    return get_preset("smoke").replace(
        name="devices-tiny", datasets=(DatasetPlan("mnist", "lenet5", (("paper", 0.03),)),),
        methods=(MethodPlan("standard"), MethodPlan("pgd-at", {"steps": 2})), protocols=("paper",),
        protocol_budgets={}, train_size=300, val_size=100, epochs=1,
        eval=EvalPlan(attacks=("fgsm", "pgd"), n=40, batch_size=40, curve_factors=(0.0, 1.0),
                      curve_n=20, audit=False, attack_options={"pgd": {"steps": 3}}))


def _numbers(value):
    """`value` without wall times, memory and paths (what may differ between executors), and
    the eval file's digest (it covers those timings too)."""
    noisy = ("time", "_s", "seconds", "mem", "timing", "finished_at", "path", "sha256")
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items() if not any(n in k for n in noisy)}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


@pytest.mark.integration  # two tiny pipelines, worker processes
def test_one_or_two_workers_give_the_same_numbers(tmp_path, mnist_root):
    from safetensors.torch import load_file

    from robustlab.experiments.runner import reproduce

    preset = _tiny_preset()
    outs = {}
    for n in (1, 2):
        outs[n] = tmp_path / f"w{n}"
        reproduce(preset, outs[n], workers=n, threads=1, device="cpu",
                  data_dir=str(mnist_root), report=False)
    runs = sorted(p.name for p in (outs[1] / "runs").iterdir() if p.is_dir())
    assert runs == ["mnist-lenet5-pgd-at-eps0.03-s0", "mnist-lenet5-standard-s0"]
    for run in runs:
        a, b = outs[1] / "runs" / run, outs[2] / "runs" / run
        cfg_a, cfg_b = (json.loads((d / "config.json").read_text())["train"] for d in (a, b))
        assert cfg_a["device"] == "cpu" and cfg_a == cfg_b | {"out_dir": cfg_a["out_dir"]}
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        assert sa["weights_sha256"] == sb["weights_sha256"] and sa["test_acc"] == sb["test_acc"]
        assert _numbers(sa) == _numbers(sb)
        wa, wb = (load_file(d / "model.safetensors") for d in (a, b))  # metadata has out_dir
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        for ev in sorted((a / "eval").glob("*.json")):
            ea, eb = json.loads(ev.read_text()), json.loads((b / "eval" / ev.name).read_text())
            assert _numbers(ea) == _numbers(eb) and ea["per_sample"] == eb["per_sample"]
    exp = json.loads((outs[2] / "experiment.json").read_text())
    assert exp["workers"] == 2 and exp["devices"] == ["cpu"] and exp["threads"] == 1
    for phase in ("trained", "evaluated"):
        placed = exp["placements"][phase]
        assert sorted(placed) == runs
        assert all(p["device"] == "cpu" and p["worker"] in (0, 1) for p in placed.values())


# --- bench/gpu_grid.py: the prepared GPU script ------------------------------------------------

def _gpu_grid():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_grid.py"
    spec = importlib.util.spec_from_file_location("gpu_grid", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_grid"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_grid_builds_the_paper_protocol_on_mnist_and_fashion_mnist(tmp_path):
    from robustlab.experiments.plan import plan_jobs
    from robustlab.experiments.presets import ALL_METHODS

    grid = _gpu_grid()
    preset = grid.grid_preset(grid.parse_args([]))
    assert [d.dataset for d in preset.datasets] == ["mnist", "fashion-mnist"]
    assert {m.method for m in preset.methods} == set(ALL_METHODS)
    assert (preset.seeds, preset.epochs, preset.batch_size, preset.lr) == ((0, 1, 2), 50, 128,
                                                                          0.01)
    assert preset.protocols == ("paper",) and preset.train_size is None
    jobs = plan_jobs(preset, tmp_path, device="cpu")
    # standard and lipschitz once per seed, every other method at both budgets
    assert len(jobs) == 2 * 3 * (2 + 2 * (len(ALL_METHODS) - 2))
    assert {j.train["recipe"] for j in jobs} == {"paper"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_grid_refuses_without_cuda_unless_dry_run():
    grid = _gpu_grid()
    args = grid.parse_args([])
    with pytest.raises(SystemExit) as info:
        grid.refuse_without_cuda(args)
    assert info.value.code == 2
    dry = grid.parse_args(["--dry-run"])
    grid.refuse_without_cuda(dry)
    assert dry.device == "cpu"
