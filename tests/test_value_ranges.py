"""Issue #32 items 9-12: every value has a range, and the CLI says so in one line.

Certify's sigma and its curve, `reproduce --workers` (capped at the jobs, warned above the
cores, a dead worker in one line), value ranges of the result files the report and `evaluate`
read back, `export` loose ends (unfinished run, stale part files, TracerWarnings, file mode),
seeds, threads, momentum, --defense-opt, duplicate YAML keys and the L2 budget of every command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from robustlab.cli import main
from robustlab.common.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SEED_MAX = 2**63 - 1  # = robustlab.common.checks.SEED_MAX
TOO_BIG_SEED = str(2**64)  # torch.manual_seed raised a bare "Overflow when unpacking long"


def _one_error_line(capsys, command: str) -> str:
    """The stderr of a refused command: exactly one line, `robustlab COMMAND: error: ...`
    (argparse's usage lines before it aside), no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and lines[0].startswith(f"robustlab {command}: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished 1-epoch LeNet-5 run on the synthetic dataset (no files needed, ~3 s)."""
    from robustlab.training import TrainConfig, train

    out = tmp_path_factory.mktemp("ranges") / "run"
    train(TrainConfig(dataset="synthetic", model="lenet5", epochs=1, batch_size=50,
                      dataset_options={"n_train": 200, "n_test": 60}, out_dir=str(out),
                      progress=False, device="cpu", threads=1))
    return out


@pytest.fixture(scope="module")
def tiny_eval(tiny_run, tmp_path_factory) -> dict:
    """An eval JSON of `tiny_run` as `robustlab evaluate` writes it (FGSM, 20 images)."""
    out = tmp_path_factory.mktemp("eval") / "eval.json"
    assert main(["evaluate", str(tiny_run), "--eps", "0.1", "--attacks", "fgsm", "--n", "20",
                 "--no-audit", "--no-curve", "--no-progress", "--device", "cpu",
                 "--out", str(out)]) == 0
    return json.loads(out.read_text())


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


# ------------------------------------------------------------- 9. certify: sigma, curve, n
def test_certify_refuses_a_sigma_beyond_the_pixel_range(tiny_run, tmp_path, capsys):
    """--sigma 1e6 used to be accepted (and hung building the curve when an image was
    certified); sigma is now at most 10, in one line, before any compute."""
    assert main(["certify", str(tiny_run), "--sigma", "1e6", "--out", str(tmp_path / "c.json"),
                 "--no-progress", "--no-figure", "--device", "cpu"]) == 2
    line = _one_error_line(capsys, "certify")
    assert "--sigma: expected a noise std <= 10" in line and "got 1000000.0" in line
    assert not (tmp_path / "c.json").exists()
    from robustlab.certification import CertifySettings

    assert CertifySettings(sigma=10.0).validate().sigma == 10.0


def test_certified_accuracy_curve_is_bounded_whatever_the_radius():
    from robustlab.certification import accuracy_curve
    from robustlab.certification.curve import CURVE_MAX_POINTS

    for top in (0.3, 9.99, 37.0, 1e4, 4e6):
        curve = accuracy_curve([top, None, 0.2], [True, False, True])
        radius = curve["radius"]
        assert len(radius) <= CURVE_MAX_POINTS and radius[0] == 0.0 and radius[-1] >= top
        assert curve["certified_accuracy"][0] == pytest.approx(2 / 3)
        assert curve["certified_accuracy"][-1] == (1 / 3 if radius[-1] == top else 0.0)
    assert len(accuracy_curve([3.7], [True])["radius"]) == 371  # step 0.01 kept up to 10


def test_certify_warns_when_n_is_below_n0(tiny_run, tmp_path, capsys):
    """CERTIFY selects with n0 samples and bounds with n (Cohen et al.): n < n0 is sound but
    weak, so it is accepted with a one-line warning naming the largest radius it allows."""
    from robustlab.certification import CertifySettings, max_certifiable_radius
    from robustlab.certification.study import plan_certify

    assert CertifySettings(sigma=0.25, n0=50, n=100).warnings() == []
    plan_certify(str(tiny_run), sigma=0.25, images=2, out=str(tmp_path / "c.json"),
                 overwrite=False, n0=50, n=10)
    err = capsys.readouterr().err.strip()
    top = max_certifiable_radius(10, 0.001, 0.25)
    assert err == (f"warning: --n 10 is smaller than --n0 50: the radius is bounded with the n "
                   f"samples alone, so no radius above {top:.3g} can be certified (the usual "
                   "choice is n >> n0, e.g. --n0 100 --n 10000)")
    assert "every image will abstain" in CertifySettings(sigma=0.25, n0=50, n=5).warnings()[0]


# ------------------------------------------------------------- 10. reproduce --workers
def test_workers_are_capped_at_the_jobs_with_a_note(capsys):
    from robustlab.experiments.devices import executor_workers

    devices, pool = executor_workers("cpu", 10, threads=None, executor="local", jobs=6)
    assert devices == ("cpu",) and len(pool) == 6
    assert {w.threads for w in pool} == {max(1, (os.cpu_count() or 1) // 6)}
    err = capsys.readouterr().err
    assert "note: --workers asks for 10 worker(s) but the grid has 6 job(s); starting 6" in err
    executor_workers("cpu", 10, threads=None, executor="local")  # a check only: no note
    assert "note:" not in capsys.readouterr().err


def test_more_workers_than_cores_warn(monkeypatch, capsys):
    from robustlab.experiments.devices import executor_workers, worker_notes

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    _, pool = executor_workers("cpu", 3, threads=None, executor="local", jobs=10)
    assert len(pool) == 3
    err = capsys.readouterr().err
    assert err.startswith("warning: 3 worker processes on 2 cores: they take turns")
    assert worker_notes(2, 10, "local") == []
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # a cluster's nodes have their own
    assert worker_notes(3, 10, "ray") == []


def test_reproduce_starts_no_more_workers_than_jobs(tmp_path, monkeypatch, capsys):
    from robustlab.experiments import runner
    from robustlab.experiments.presets import get_preset

    started = []

    def record(executor, jobs, fn, report, workers, *, gpu=False):
        started.append((len(jobs), len(workers)))
        raise KeyboardInterrupt  # nothing to run: the pool is what this test is about

    monkeypatch.setattr(runner, "run_on_workers", record)
    with pytest.raises(KeyboardInterrupt):
        runner.reproduce(get_preset("smoke"), tmp_path / "exp", workers=10, device="cpu",
                         report=False, threads=1)
    assert started == [(6, 6)]
    assert "starting 6" in capsys.readouterr().err


def _dying_job(job, worker) -> str:
    os._exit(3)  # a worker killed mid-job (out of memory, kill -9)


@pytest.mark.integration  # worker processes
def test_a_dead_worker_ends_reproduce_with_one_line(tmp_path, mnist_root, monkeypatch, capsys):
    from robustlab.experiments import runner

    monkeypatch.setattr(runner, "_train_job", _dying_job)
    code = main(["reproduce", "--preset", "smoke", "--workers", "2", "--threads", "1",
                 "--device", "cpu", "--data-dir", str(mnist_root), "--out",
                 str(tmp_path / "exp"), "--no-report"])
    assert code == 2
    line = _one_error_line(capsys, "reproduce")
    assert "ended with exit code 3 while running mnist-lenet5-" in line
    assert line.endswith("rerun to resume (finished runs are kept)")


class _FakeRay(types.ModuleType):
    """Just enough of `ray` for `executors._run_ray`: every task's worker crashes."""

    def __init__(self) -> None:
        super().__init__("ray")

        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            pass

        class WorkerCrashedError(RayError):
            pass

        self.exceptions = types.SimpleNamespace(RayError=RayError, RayTaskError=RayTaskError,
                                                WorkerCrashedError=WorkerCrashedError)

    def is_initialized(self) -> bool:
        return True

    def remote(self, **_):
        return lambda fn: types.SimpleNamespace(remote=lambda *args: object())

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        raise self.exceptions.WorkerCrashedError(
            "The worker died unexpectedly while executing this task.\n" + "  detail\n" * 40)


def test_a_dead_ray_worker_is_one_line(monkeypatch):
    from robustlab.experiments.devices import Worker
    from robustlab.experiments.executors import WorkerDiedError, run_on_workers

    monkeypatch.setitem(sys.modules, "ray", _FakeRay())
    job = types.SimpleNamespace(name="mnist-lenet5-standard-s0")
    with pytest.raises(WorkerDiedError) as info:
        run_on_workers("ray", [job], lambda j, w: "ok", lambda *a: None,
                       [Worker(0, "cpu", 1)])
    message = str(info.value)
    assert "\n" not in message and "running mnist-lenet5-standard-s0" in message
    assert "WorkerCrashedError: The worker died unexpectedly" in message
    assert message.endswith("rerun to resume (finished runs are kept)")


# ------------------------------------------------------------- 11. result files' values
def _eval_folder(tmp_path: Path, tiny_run: Path, data: dict) -> Path:
    """A run folder whose eval.json is `data` (without a digest: as written before digests
    existed, or by an editor who recomputed it)."""
    run = _copy_run(tiny_run, tmp_path / "exp" / "run")
    data = {k: v for k, v in data.items() if k != "sha256"}
    (run / "eval.json").write_text(json.dumps(data))
    return tmp_path / "exp"


@pytest.mark.parametrize(("edit", "field", "shown"), [
    (lambda d: d["clean"].__setitem__("acc", 1.5), "clean.acc", "1.5"),
    (lambda d: d["attacks"]["fgsm"].__setitem__("acc", -0.1), "attacks.fgsm.acc", "-0.1"),
    (lambda d: d.__setitem__("n", 20.0), "n", "20.0"),
    (lambda d: d["settings"].__setitem__("eps", "0.1"), "settings.eps", "'0.1'"),
    (lambda d: d["training"].__setitem__("test_acc", "high"), "training.test_acc", "'high'"),
])
def test_the_report_refuses_values_out_of_range(tiny_run, tiny_eval, tmp_path, capsys, edit,
                                                field, shown):
    data = json.loads(json.dumps(tiny_eval))
    edit(data)
    folder = _eval_folder(tmp_path, tiny_run, data)
    assert main(["report", str(folder)]) == 2
    line = _one_error_line(capsys, "report")
    assert f"{folder / 'run' / 'eval.json'}: {field}: expected " in line
    assert line.endswith(f"got {shown}")
    assert not (folder / "report.md").exists()


def test_the_report_reads_a_valid_eval_file(tiny_run, tiny_eval, tmp_path):
    folder = _eval_folder(tmp_path, tiny_run, tiny_eval)
    assert main(["report", str(folder)]) == 0 and (folder / "report.md").is_file()


def test_value_checks_name_the_field_and_range(tiny_eval):
    from robustlab.common.files import FileFormatError
    from robustlab.common.result_checks import check_eval_values, check_summary_values
    from robustlab.evaluation.schema import EvalFileError, check_eval_dict

    assert check_eval_dict(tiny_eval, "e.json") is tiny_eval
    bad = json.loads(json.dumps(tiny_eval))
    bad["attacks"]["fgsm"]["perturbation"]["l2_mean"] = float("inf")
    with pytest.raises(EvalFileError, match=r"^e.json: attacks.fgsm.perturbation.l2_mean: "
                                            r"expected a finite number >= 0 or null, got inf$"):
        check_eval_dict(bad, "e.json")  # evaluate's cache: such a file is recomputed
    with pytest.raises(FileFormatError, match=r"curve.points\[0\].acc: expected a finite "
                                              r"number in \[0, 1\], got 2"):
        check_eval_values({"curve": {"points": [{"acc": 2}]}}, "e.json")
    with pytest.raises(FileFormatError, match=r"^s.json: epochs_done: expected an integer >= 0 "
                                              r"or null, got -1$"):
        check_summary_values({"test_acc": 0.9, "epochs_done": -1}, "s.json")


def test_a_summary_with_a_string_accuracy_is_refused(tiny_run, tmp_path, capsys):
    run = _copy_run(tiny_run, tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "test_acc": "high"}))
    assert main(["evaluate", str(run), "--eps", "0.1", "--attacks", "fgsm", "--n", "10",
                 "--no-audit", "--no-curve", "--no-progress", "--device", "cpu"]) == 2
    line = _one_error_line(capsys, "evaluate")
    assert line.endswith(f"{run / 'summary.json'}: test_acc: expected a finite number in "
                         "[0, 1] or null, got 'high'")
    assert not (run / "eval.json").exists()


# ------------------------------------------------------------- 12. export loose ends
def test_export_of_an_unfinished_run_warns(tiny_run, tmp_path, capsys):
    run = _copy_run(tiny_run, tmp_path / "run")
    (run / "summary.json").unlink()
    assert main(["export", str(run), "--out", str(tmp_path / "m.pt")]) == 0
    err = capsys.readouterr().err
    assert f"warning: run {run} is not complete (no summary.json): exporting the weights of " \
           "its last finished epoch (1 of 1)" in err
    assert (tmp_path / "m.pt").is_file()


@pytest.mark.integration  # a killed subprocess
def test_a_killed_exports_part_file_is_removed_by_the_next(tiny_run, tmp_path):
    out = tmp_path / "out"
    code = ("import os, sys\nimport robustlab.runs.export as e\n"
            "e._check_same_logits = lambda *a: os._exit(9)  # killed before the rename\n"
            "e.export_model(sys.argv[1], sys.argv[2])\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", code, str(tiny_run), str(out / "m.pt")],
                            env=env, check=False, capture_output=True)
    assert killed.returncode == 9
    parts = list(out.glob(".m.pt.*.part"))
    assert len(parts) == 1 and not (out / "m.pt").exists()
    mine = out / f".other.pt.{os.getpid()}.abcd1234.part"  # an export still running
    mine.write_bytes(b"")
    foreign = out / ".notes.part"  # not a name export makes
    foreign.write_bytes(b"")
    assert main(["export", str(tiny_run), "--out", str(out / "m.pt")]) == 0
    assert not parts[0].exists() and mine.exists() and foreign.exists()
    assert (out / "m.pt").is_file()


def test_torchscript_export_is_quiet_and_0644_less_umask(tiny_run, tmp_path):
    from robustlab.runs.export import export_model

    old = os.umask(0o027)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = export_model(tiny_run, tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert [str(w.message) for w in caught if w.category is torch.jit.TracerWarning] == []
    assert (path.stat().st_mode & 0o777) == 0o640


class _DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # traced as a constant: TracerWarning from this file, not silenced
            return x.flatten(1)[:, :3]
        return -x.flatten(1)[:, :3]


def test_other_tracer_warnings_still_show(tmp_path):
    from robustlab.runs.export import export_model

    with pytest.warns(torch.jit.TracerWarning, match="Python boolean"):
        export_model(_DataDependent(), tmp_path / "d.pt", input_shape=(1, 4, 4))


# ------------------------------------------------------------- 12. seeds, threads, options
@pytest.mark.parametrize("argv, command", [
    (["train", "--dataset", "synthetic", "--seed", TOO_BIG_SEED], "train"),
    (["evaluate", "RUN", "--eps", "0.1", "--seed", TOO_BIG_SEED], "evaluate"),
    (["certify", "RUN", "--sigma", "0.25", "--seed", TOO_BIG_SEED], "certify"),
    (["transfer", "RUN", "RUN2", "--seed", TOO_BIG_SEED], "transfer"),
])
def test_a_seed_beyond_64_bits_is_one_line(tiny_run, tmp_path, capsys, argv, command):
    run2 = tmp_path / "run2"
    if "RUN2" in argv:
        _copy_run(tiny_run, run2)
    argv = [str(tiny_run) if a == "RUN" else str(run2) if a == "RUN2" else a for a in argv]
    out = ["--out", str(tmp_path / ("t" if command == "train" else "o.json"))]
    assert main(argv + out + ["--device", "cpu", "--no-progress"]) == 2
    line = _one_error_line(capsys, command)
    assert f"seed: expected an integer in [0, 2**63 - 1], got {TOO_BIG_SEED}" in line


def test_seed_range_in_the_configs():
    from robustlab.common import checks
    from robustlab.evaluation.settings import EvalSettings, EvalSettingsError
    from robustlab.training import TrainConfig

    assert checks.SEED_MAX == SEED_MAX
    assert TrainConfig(dataset="synthetic", seed=SEED_MAX).validate().seed == SEED_MAX
    with pytest.raises(ConfigError, match=r"^seed: expected an integer in \[0, 2\*\*63 - 1\]"):
        TrainConfig(dataset="synthetic", seed=SEED_MAX + 1).validate()
    with pytest.raises(EvalSettingsError, match=r"^seed: expected an integer in \[0, 2\*\*63"):
        EvalSettings(eps=0.3, seed=2**64).validate()


def _train(argv: list[str], tmp_path: Path) -> list[str]:
    return ["train", "--dataset", "synthetic", "--epochs", "1", "--device", "cpu",
            "--no-progress", "--out", str(tmp_path / "t"), *argv]


@pytest.mark.parametrize("argv, expected", [
    (["--set", "threads=1000"], "threads: expected an integer in [1, "),
    (["--momentum", "5"], "momentum: expected a finite number in [0, 1), got 5.0"),
    (["--momentum", "1"], "momentum: expected a finite number in [0, 1), got 1.0"),
    (["--defense-opt", "bits=1"], "defense_options: {'bits': 1} given without a defense "
                                  "(--defense-opt needs --defense NAME)"),
])
def test_bad_training_options_are_one_line(tmp_path, capsys, argv, expected):
    assert main(_train(argv, tmp_path)) == 2
    assert expected in _one_error_line(capsys, "train")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("command", [
    ["train", "--dataset", "synthetic"], ["reproduce", "--preset", "smoke"],
    ["evaluate", "RUN", "--eps", "0.1"],
])
def test_threads_beyond_4_per_core_are_refused(tmp_path, capsys, command):
    high = 4 * (os.cpu_count() or 1)
    with pytest.raises(SystemExit) as info:  # argparse's own exit for a bad --threads
        main([*command, "--out", str(tmp_path / "o"), "--threads", str(high + 1)])
    assert info.value.code == 2
    assert (f"error: argument --threads: expected an integer in [1, {high}] (at most 4 per "
            f"core, {os.cpu_count()} cores here), got {high + 1}") in capsys.readouterr().err


def test_threads_recorded_on_a_bigger_machine_still_load(tiny_run, tmp_path):
    from robustlab.runs.load import load_run
    from robustlab.training import TrainConfig

    run = _copy_run(tiny_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["train"]["threads"] = 10_000  # trained on a machine with 2,500+ cores
    (run / "config.json").write_text(json.dumps(config))
    assert load_run(run, device="cpu").cfg.threads == 10_000
    with pytest.raises(ConfigError, match="threads: expected an integer in"):
        TrainConfig(dataset="synthetic", threads=10_000).validate()
    from robustlab.experiments.devices import DeviceListError, plan_workers

    with pytest.raises(DeviceListError, match="--threads: expected an integer in"):
        plan_workers(("cpu",), 1, threads=10_000)


def test_a_duplicate_yaml_key_is_refused_with_its_lines(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: synthetic\nlr: 0.1\nepochs: 1\nlr: 0.5\n")
    assert main(_train(["--config", str(config)], tmp_path)) == 2
    assert _one_error_line(capsys, "train").endswith(
        f"config: cannot parse {config}: duplicate key 'lr' on line 4 (first on line 2); "
        "expected each key once")
    from robustlab.common.yaml_io import load_yaml

    assert load_yaml("base: &b {x: 1}\nm:\n  <<: *b\n  x: 2\n")["m"] == {"x": 2}  # merges
    with pytest.raises(Exception, match="duplicate key 'a' on line 1"):
        load_yaml("{a: 1, a: 2}")


# ------------------------------------------------------------- 12. one L2 budget check
@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> Path:
    from robustlab.runs.export import export_model

    return export_model(tiny_run, tmp_path_factory.mktemp("exported") / "m.pt")


@pytest.mark.parametrize("command", ["evaluate-run", "evaluate-model", "transfer"])
def test_an_l2_budget_beyond_the_image_diameter_is_one_line(tiny_run, exported, tmp_path,
                                                            capsys, command):
    """28 = sqrt(1 * 28 * 28): no two synthetic images lie further apart. `evaluate RUN`
    refused 1000 already; `evaluate --model` and `transfer` accepted it (the same check now)."""
    budget = ["--norm", "l2", "--eps", "1000", "--device", "cpu", "--no-progress",
              "--out", str(tmp_path / "o.json")]
    if command == "evaluate-run":
        argv = ["evaluate", str(tiny_run), "--attacks", "fgsm", "--no-audit", "--no-curve"]
    elif command == "evaluate-model":
        argv = ["evaluate", "--model", str(exported), "--dataset", "synthetic", "--attacks",
                "fgsm", "--no-audit", "--no-curve"]
    else:
        argv = ["transfer", str(tiny_run), str(_copy_run(tiny_run, tmp_path / "run2")),
                "--images", "10", "--steps", "1", "--no-figure"]
    assert main(argv + budget) == 2
    line = _one_error_line(capsys, command.split("-")[0])
    assert "--eps: an L2 budget of 1000.0 exceeds 28.0, the largest distance between two " \
           "images of " in line and line.endswith("(sqrt(C*H*W)); expected at most 28.0")
    assert not (tmp_path / "o.json").exists()
