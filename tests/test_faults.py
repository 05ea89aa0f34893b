"""Fault injection: a real `kill -9` at every write point of a run, then resume (or rerun).

A subprocess runs `robustlab train` (or `evaluate`, `report`) with `os.replace`/`os.rename`
wrapped so that the k-th rename into the test's folder SIGKILLs the process just before or just
after it happens. Every write robustlab makes ends in such a rename (common/files.atomic_write,
the --overwrite swap), so k = 1..N covers every write point. After the kill the test asserts:
the result of `--resume` (or a rerun) equals an uninterrupted run's bit for bit (weights; the
metrics and summary without timings), no temporary file is left, and no state is reached that
neither `--resume` nor a plain run accepts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from robustlab.cli import main

pytestmark = pytest.mark.integration  # subprocesses killed at each write, CLI training runs

KILLER = r"""
import atexit, os, signal, sys
root, k, phase = os.path.realpath(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
count = [0]
def wrap(real):
    def rename(src, dst, *args, **kwargs):
        inside = os.path.realpath(os.fspath(dst)).startswith(root + os.sep)
        if inside:
            count[0] += 1
            if count[0] == k and phase == "before":
                os.kill(os.getpid(), signal.SIGKILL)
        out = real(src, dst, *args, **kwargs)
        if inside and count[0] == k and phase == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    return rename
os.replace, os.rename = wrap(os.replace), wrap(os.rename)
atexit.register(lambda: print(f"RENAMES={count[0]}", file=sys.stderr))
from robustlab.cli import main
sys.exit(main(sys.argv[4:]))
"""

TIMING = {"epoch_time_s", "peak_mem_mb", "train_time_s", "epoch_time_s_mean"}


def train_args(out: Path, seed: int = 0) -> list[str]:
    return ["train", "--dataset", "synthetic", "--model", "lenet5", "--method", "pgd-at",
            "--eps", "0.1", "--opt", "steps=2", "--epochs", "2", "--batch-size", "32",
            "--lr", "0.05",
            "--set", "dataset_options={n_train: 192, n_test: 64}", "--seed", str(seed),
            "--recipe", "none", "--no-progress", "--threads", "1", "--device", "cpu",
            "--out", str(out)]


def run_killed(root: Path, k: int, phase: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run `robustlab ARGS` in a subprocess killed at the k-th rename under `root`."""
    return subprocess.run([sys.executable, "-c", KILLER, str(root), str(k), phase, *args],
                          capture_output=True, text=True, timeout=300)


def rename_count(root: Path, args: list[str]) -> int:
    done = run_killed(root, 0, "never", args)
    assert done.returncode == 0, done.stderr
    return int(done.stderr.rsplit("RENAMES=", 1)[1].split()[0])


def run_state(run: Path) -> dict:
    """What must survive a kill: weights (bitwise), metrics and summary without timings."""
    weights = load_file(str(run / "model.safetensors"))
    metrics = [{k: v for k, v in r.items() if k not in TIMING}
               for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    summary = {k: v for k, v in json.loads((run / "summary.json").read_text()).items()
               if k not in TIMING}
    return {"weights": weights, "metrics": metrics, "summary": summary,
            "config": {k: v for k, v in json.loads((run / "config.json").read_text())["train"]
                       .items() if k != "out_dir"}}


def assert_same_run(a: dict, b: dict) -> None:
    assert a["weights"].keys() == b["weights"].keys()
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert a["metrics"] == b["metrics"] and a["summary"] == b["summary"]
    assert a["config"] == b["config"]


def undated(data: bytes) -> bytes:
    """A report file without the "generated <date> <time> UTC" stamp of a folder of user runs
    (a rerun in a later minute must still compare equal)."""
    import re

    return re.sub(rb"(?i)(generated) \d{4}-\d\d-\d\d \d\d:\d\d UTC", rb"\1", data)


def untimed(obj):
    if isinstance(obj, dict):
        return {k: untimed(v) for k, v in obj.items() if "time" not in k and k != "seconds"}
    return obj


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.name.endswith(".tmp")
                  or p.name.endswith(".staging") or p.name.endswith(".replaced"))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline")
    assert main(train_args(root / "run")) == 0
    n = rename_count(root / "count", train_args(root / "count" / "run"))
    return run_state(root / "run"), n


def test_every_write_point_of_train_survives_kill_9_and_resume(baseline, tmp_path):
    expected, n_writes = baseline
    assert n_writes == 1 + 3 * 2 + 1  # config; checkpoint, metrics, weights per epoch; summary
    # killed just after write k = killed just before write k + 1; so "before" at every write
    # point plus "after" the last one covers every state a kill can leave
    points = [(k, "before") for k in range(1, n_writes + 1)] + [(n_writes, "after")]
    for k, phase in points:
        root = tmp_path / f"k{k}-{phase}"
        run = root / "run"
        killed = run_killed(root, k, phase, train_args(run))
        assert killed.returncode == -9, (k, phase, killed.stderr[-2000:])
        assert main(train_args(run) + ["--resume"]) == 0, (k, phase)
        assert_same_run(run_state(run), expected)
        assert leftovers(root) == [], (k, phase)
        assert not (run / "checkpoint.safetensors").exists()


def test_kill_during_overwrite_keeps_the_old_run_or_completes_the_new(baseline, tmp_path):
    """`--overwrite` builds the new run beside the old one and swaps it in when complete: at
    every kill point the folder holds the old run whole, or the new one whole."""
    expected, n_writes = baseline
    old_root = tmp_path / "old"
    assert main(train_args(old_root / "run", seed=1)) == 0
    old = run_state(old_root / "run")
    # the staging run's first write, an epoch's weights, its summary, the swap's two renames
    # (the other write points are the plain run's, covered above)
    for k in (1, 4, n_writes, n_writes + 1, n_writes + 2):
        root = tmp_path / f"k{k}"
        run = root / "run"
        root.mkdir()
        subprocess.run(["cp", "-r", str(old_root / "run"), str(run)], check=True)
        killed = run_killed(root, k, "before", train_args(run) + ["--overwrite"])
        assert killed.returncode == -9, (k, killed.stderr[-2000:])
        # a killed swap is completed when the folder is next claimed: --resume sees one run
        assert main(train_args(run, seed=1) + ["--resume"]) in (0, 2)
        state = run_state(run) if (run / "summary.json").is_file() else None
        assert state is not None, k
        if state["config"]["seed"] == 1:
            assert_same_run(state, old)  # the old run, untouched
            assert main(train_args(run) + ["--overwrite"]) == 0  # and replaceable again
        assert_same_run(run_state(run), expected)
        assert leftovers(root) == [], k


def test_kill_during_evaluate_and_report_then_rerun_equals_a_clean_run(baseline, tmp_path):
    root = tmp_path / "exp"
    run = root / "run"
    assert main(train_args(run)) == 0
    eval_args = ["evaluate", str(run), "--attacks", "fgsm", "--n", "32", "--device", "cpu"]
    assert main(eval_args) == 0
    clean_eval = json.loads((run / "eval.json").read_text())
    (run / "eval.json").unlink()
    killed = run_killed(root, 1, "before", eval_args)
    assert killed.returncode == -9 and not (run / "eval.json").exists()
    assert main(eval_args) == 0
    again = json.loads((run / "eval.json").read_text())
    assert untimed(again["attacks"]) == untimed(clean_eval["attacks"])
    assert again["clean"] == clean_eval["clean"]
    assert main(["report", str(root)]) == 0
    report_files = {p.name: undated(p.read_bytes()) for p in root.iterdir()
                    if p.suffix in (".md", ".json", ".csv")}
    n_report = rename_count(root, ["report", str(root)])
    for k in range(1, n_report + 1):
        killed = run_killed(root, k, "before", ["report", str(root)])
        assert killed.returncode == -9
        assert main(["report", str(root)]) == 0
        for name, data in report_files.items():
            assert undated((root / name).read_bytes()) == data, (k, name)


def test_training_in_process_leaves_the_thread_count_as_it_was(tmp_path):
    """`--threads 1` applies to the run only: later computations in the same process (a
    resume, an unbroken comparison run) must use the threads they had, or they differ in the
    last bits."""
    before = torch.get_num_threads()
    assert main(train_args(tmp_path / "run")) == 0  # --threads 1
    assert torch.get_num_threads() == before


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path, capsys):
    from robustlab.runs.folder import hold_lock

    run = tmp_path / "run"
    with hold_lock(run):  # as a training process holds it
        assert main(train_args(run)) == 2
    err = capsys.readouterr().err
    assert "in use by another robustlab process" in err and "Traceback" not in err
    assert not run.exists()
    assert main(train_args(run)) == 0  # free again once the holder is gone


def test_overwrite_refuses_anything_but_a_run_folder(tmp_path, capsys):
    home = tmp_path / "home"
    (home / "documents").mkdir(parents=True)
    (home / "notes.txt").write_text("precious")
    assert main(train_args(home) + ["--overwrite"]) == 2
    assert "not a robustlab run folder" in capsys.readouterr().err
    assert (home / "notes.txt").read_text() == "precious"
    # a config.json that is not a run's, or a run folder holding sub-folders: refused too
    (home / "config.json").write_text('{"name": "my project"}')
    assert main(train_args(home) + ["--overwrite"]) == 2
    assert (home / "notes.txt").read_text() == "precious"
    run = tmp_path / "run"
    assert main(train_args(run)) == 0
    (run / "keep").mkdir()
    assert main(train_args(run, seed=1) + ["--overwrite"]) == 2
    assert "holds folders (keep)" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 0


def test_stale_temp_files_of_a_killed_first_write_do_not_block_a_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.json.x1y2.tmp").write_text('{"train": ')  # killed mid-write
    assert main(train_args(run)) == 0
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "other-model", "other-run"])
def test_damaged_weights_are_refused_with_a_clear_error(tmp_path, capsys, damage):
    run = tmp_path / "run"
    assert main(train_args(run)) == 0
    weights = run / "model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "flip":
        data[-5] ^= 0x10  # one bit of the last tensor's bytes
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a safetensors file at all")
    if damage == "other-model":
        from robustlab.runs.checkpoint import save_weights

        save_weights(weights, torch.nn.Linear(4, 2), {})
    elif damage == "other-run":  # same architecture, another seed's weights copied in
        assert main(train_args(tmp_path / "other", seed=1)) == 0
        weights.write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    else:
        weights.write_bytes(bytes(data))
    code = main(["evaluate", str(run), "--attacks", "fgsm", "--n", "8", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "model.safetensors" in err
    expected = {"flip": "SHA-256", "truncate": "not a readable", "garbage": "not a readable",
                "other-model": "does not match the model",
                "other-run": "not the weights this run finished with"}[damage]
    assert expected in err
    assert not (run / "eval.json").exists()


def test_non_finite_loss_stops_training_and_writes_valid_json(tmp_path, capsys):
    run = tmp_path / "run"
    args = train_args(run)
    args[args.index("pgd-at")] = "standard"
    args = [a for a in args if a not in ("--eps", "0.1", "--opt", "steps=2")]
    code = main(args + ["--lr", "1e30", "--set", "epochs=4"])
    assert code == 1
    assert "non-finite" in capsys.readouterr().err
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["non_finite_loss"] and rows[-1]["train_loss"] is None
    summary = json.loads((run / "summary.json").read_text())  # strict JSON: no bare NaN
    assert summary["health"] == "non-finite loss" and summary["epochs_done"] < 4
    json.loads((run / "config.json").read_text(), parse_constant=_reject)


def _reject(name: str):
    raise AssertionError(f"bare {name} in JSON")


def test_evaluating_an_unfinished_run_warns_and_the_report_shows_it_apart(tmp_path, capsys):
    root = tmp_path / "exp"
    run = root / "run"
    killed = run_killed(root, 4, "after", train_args(run))  # after epoch 1's weights
    assert killed.returncode == -9
    assert main(["evaluate", str(run), "--attacks", "fgsm", "--n", "16", "--device", "cpu"]) == 0
    assert "is not complete" in capsys.readouterr().err
    data = json.loads((run / "eval.json").read_text())
    assert data["training"]["complete"] is False and data["training"]["epochs_done"] == 1
    assert main(["report", str(root)]) == 0
    results = json.loads((root / "results.json").read_text())
    (block,) = results["table1"]
    assert block["rows"] == [] and [f["health"] for f in block["failed"]] == ["unfinished"]


def test_report_on_a_damaged_metrics_file_is_one_line(tmp_path, capsys):
    root = tmp_path / "exp"
    run = root / "run"
    assert main(train_args(run)) == 0
    assert main(["evaluate", str(run), "--attacks", "fgsm", "--n", "8", "--device", "cpu"]) == 0
    text = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(text[: len(text) - 20])
    capsys.readouterr()
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert "metrics.jsonl: line 2 is not valid JSON" in err and "Traceback" not in err


def test_full_disk_is_one_line_and_resume_finishes_the_run(baseline, tmp_path, capsys,
                                                           monkeypatch):
    """ENOSPC at the 5th write (epoch 2's checkpoint): a one-line error, the files written so
    far whole, and --resume, once there is space again, gives the uninterrupted run."""
    import errno
    import os

    expected, _ = baseline
    run = tmp_path / "run"
    real, count = os.replace, [0]

    def full_disk(src, dst, *args, **kwargs):
        count[0] += 1
        if count[0] == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full_disk)
    assert main(train_args(run)) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    monkeypatch.setattr(os, "replace", real)
    assert main(train_args(run) + ["--resume"]) == 0
    assert_same_run(run_state(run), expected)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("args, message", [
    (["--eps", "1e9"], "exceeds 1, the whole pixel range"),
    (["--n", "100000"], "exceeds the 64 test images"),
    (["--norm", "l2", "--eps", "1000"], "exceeds 28.0"),
    (["--device", "cuda:3"], "CUDA"),
])
def test_evaluate_refuses_impossible_settings_before_compute(baseline, tmp_path, capsys, args,
                                                             message, monkeypatch):
    run = tmp_path / "run"
    assert main(train_args(run)) == 0
    monkeypatch.setattr("robustlab.evaluation.runs.evaluate_loaded_run",
                        lambda *a, **k: pytest.fail("compute started"))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--attacks", "fgsm", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_evaluate_out_that_cannot_be_written_fails_before_compute(baseline, tmp_path, capsys,
                                                                  monkeypatch):
    run = tmp_path / "run"
    assert main(train_args(run)) == 0
    monkeypatch.setattr("robustlab.evaluation.runs.evaluate_loaded_run",
                        lambda *a, **k: pytest.fail("compute started"))
    (tmp_path / "a-file").write_text("x")
    for out, message in ((tmp_path / "a-file" / "eval.json", "cannot create"),
                         (tmp_path, "is a folder")):
        assert main(["evaluate", str(run), "--attacks", "fgsm", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
