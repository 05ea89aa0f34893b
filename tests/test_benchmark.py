"""`robustlab benchmark` (issue #36 item 3): RobustBench's protocol (the first n test images,
AutoAttack standard at the original counts, the model's own eps), clean and AutoAttack accuracy
with 95% Clopper-Pearson intervals, a JSON in RobustBench's model_info format plus robustlab's
fields, the published figures compared; end to end on a RobustBench-format checkpoint (an entry
swapped to LeNet-5, as tests/test_robustbench_load.py does), a run folder, a zoo entry and a
model file of the user's; bad input is one line (exit 2) before any compute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_robustbench_load import TINY, _prefixed, tiny_body, write_cifar10

from robustlab.certification.bounds import clopper_pearson_interval
from robustlab.cli import main
from robustlab.experiments import benchmark as bench
from robustlab.experiments.benchmark import MODEL_INFO_FIELDS
from robustlab.models import robustbench as rbload
from robustlab.models.robustbench_entries import ENTRIES

ARGS = ["--device", "cpu", "--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished LeNet-5 run on synthetic data (1 epoch, EMA weights), trained at eps 0.3."""
    from robustlab.training import TrainConfig, train

    out = tmp_path_factory.mktemp("bench") / "run"
    train(TrainConfig(dataset="synthetic", model="lenet5", epochs=1, recipe="none", eps=0.3,
                      ema=0.9, progress=False, device="cpu", threads=1, out_dir=str(out)))
    return out


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> Path:
    """RobustBench's checkpoint layout of an entry of LeNet-5 (reported 50% / 20%), CIFAR-10
    files of 10 images each; returns the checkpoint file."""
    from robustlab.data import cifar

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(rbload, "ENTRIES", (*ENTRIES, TINY))
    monkeypatch.setattr(cifar, "OFFICIAL_RECORDS", 10)
    write_cifar10(tmp_path / "data")
    file = tmp_path / "tiny.pt"
    torch.save({"state_dict": _prefixed(tiny_body().state_dict(), "module.")}, file)
    monkeypatch.chdir(tmp_path)
    return file


def _bench(capsys, *args) -> tuple[int, str, str]:
    code = main(["benchmark", *args, *ARGS])
    out, err = capsys.readouterr()
    return code, out, err


# ---- the interval ------------------------------------------------------------------------

def test_interval_matches_a_hand_computation():
    """Two-sided 95% Clopper-Pearson: closed forms at k = 0 and k = n, scipy's beta quantiles
    elsewhere (when scipy is installed), and it always holds k / n."""
    n = 16
    assert clopper_pearson_interval(0, n) == (0.0, pytest.approx(1 - 0.025 ** (1 / n)))
    assert clopper_pearson_interval(n, n) == (pytest.approx(0.025 ** (1 / n)), 1.0)
    for k in range(n + 1):
        low, high = clopper_pearson_interval(k, n)
        assert low <= k / n <= high
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, m in ((6, 16), (37, 100), (5953, 10000)):
        expected = (scipy_stats.beta.ppf(0.025, k, m - k + 1),
                    scipy_stats.beta.ppf(0.975, k + 1, m - k))
        assert clopper_pearson_interval(k, m) == pytest.approx(expected, abs=1e-9)
    record = bench.accuracy_with_interval(6, 16)
    assert record["acc"] == 37.5
    assert record["interval"] == pytest.approx([15.198367508, 64.565390570], abs=1e-6)


# ---- end to end --------------------------------------------------------------------------

def test_robustbench_checkpoint_end_to_end(tiny, capsys):
    code, out, _ = _bench(capsys, "--robustbench", TINY.name, "--robustbench-file", str(tiny),
                          "--dataset", "cifar10", "--threat-model", "Linf", "--images", "8",
                          "--data-dir", "data")
    assert code == 0
    data = json.loads(Path(f"benchmark-{TINY.name}.json").read_text())
    assert set(MODEL_INFO_FIELDS) <= set(data)  # RobustBench's model_info fields
    assert (data["dataset"], data["eps"], data["architecture"]) == ("cifar10", "8/255",
                                                                    "LeNet-5")
    assert data["eps_value"] == pytest.approx(8 / 255) and data["threat_model"] == "Linf"
    assert data["attack"] == {"name": "autoattack", "version": "standard", "steps": 100,
                              "n_target_classes": 9, "n_queries": 5000}
    assert data["n"] == 8 and data["source"]["kind"] == "robustbench"
    for part, key in (("clean", "clean_acc"), ("autoattack", "autoattack_acc")):
        m = data[part]
        low, high = m["interval"]
        assert low <= m["acc"] <= high and m["acc"] == 100 * m["correct"] / 8
        assert data[key] == f"{m['acc']:.2f}" and data[f"{key}_interval"] == m["interval"]
        assert [v / 100 for v in m["interval"]] == pytest.approx(
            clopper_pearson_interval(m["correct"], 8))
    published = data["published"]
    assert (published["clean_acc"], published["autoattack_acc"]) == (50.0, 20.0)
    assert published["clean_acc_difference"] == pytest.approx(data["clean"]["acc"] - 50.0)
    inside = data["clean"]["interval"][0] <= 50.0 <= data["clean"]["interval"][1]
    assert published["clean_acc_inside_interval"] is inside
    assert data["weights_sha256"] and data["command"].startswith("robustlab benchmark")
    assert "published 50.00 (RobustBench leaderboard): difference" in out
    assert "AutoAttack standard (steps 100, 9 target classes, 5000 queries)" in out
    assert "Clopper-Pearson" in out and "first 8 test images" in out


def test_an_overridden_budget_is_said_and_not_compared(tiny, capsys):
    code, out, _ = _bench(capsys, "--robustbench", TINY.name, "--robustbench-file", str(tiny),
                          "--n", "4", "--eps", "0.01", "--data-dir", "data", "--out", "b.json")
    assert code == 0
    data = json.loads(Path("b.json").read_text())
    assert data["n"] == 4 and data["eps_value"] == 0.01 and data["eps"] == "0.01"
    assert data["budget_overridden"] == ["--eps"] and data["published"] is None
    assert "--eps (instead of the entry's)" in out
    assert "published figures not compared: the budget was overridden" in out


def test_run_folder_end_to_end(run, tmp_path, capsys):
    out_file = tmp_path / "b.json"
    code, out, _ = _bench(capsys, str(run), "--images", "8", "--out", str(out_file))
    assert code == 0
    data = json.loads(out_file.read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert data["weights_sha256"] == summary["averaged_weights_sha256"]  # the EMA weights
    assert data["source"]["weights"] == "averaged" and data["budget_from"] == "run's training"
    assert (data["eps_value"], data["norm"], data["dataset"]) == (0.3, "linf", "synthetic")
    assert "linf eps 0.3 (run's training)" in out and "published" not in out
    code, _, err = _bench(capsys, str(run), "--images", "8", "--out", str(out_file))
    assert code == 2 and "already exists; pass --overwrite" in err and err.count("\n") == 1
    code, _, _ = _bench(capsys, str(run), "--images", "8", "--out", str(out_file),
                        "--overwrite", "--run-weights", "last")
    assert code == 0
    assert json.loads(out_file.read_text())["weights_sha256"] == summary["weights_sha256"]


def test_a_run_in_use_is_refused_in_one_line(run, tmp_path, capsys):
    """The run's lock (held by a training or another benchmark of it) refuses the benchmark
    before it attacks: one writer of a run's results at a time."""
    from robustlab.runs.folder import hold_lock

    with hold_lock(run):
        code, _, err = _bench(capsys, str(run), "--images", "4", "--out",
                              str(tmp_path / "b.json"))
    assert code == 2 and "is in use by another robustlab process" in err
    assert err.count("\n") == 1 and not (tmp_path / "b.json").exists()


def test_zoo_entry_end_to_end_matches_its_card(run, tmp_path, monkeypatch, capsys):
    from robustlab.zoo.add import add_entry

    measured = tmp_path / "run-benchmark.json"
    assert _bench(capsys, str(run), "--images", "8", "--out", str(measured))[0] == 0
    add_entry(run, "syn-lenet5", benchmark=measured, zoo_dir=tmp_path / "zoo")
    monkeypatch.setenv("ROBUSTLAB_ZOO", str(tmp_path / "zoo"))
    monkeypatch.chdir(tmp_path)
    code, out, _ = _bench(capsys, "--pretrained", "syn-lenet5", "--images", "8")
    assert code == 0
    data = json.loads(Path("benchmark-syn-lenet5.json").read_text())
    first = json.loads(measured.read_text())
    assert data["clean"] == first["clean"] and data["autoattack"] == first["autoattack"]
    assert data["published"]["clean_acc_difference"] == 0.0
    assert data["published"]["autoattack_acc_inside_interval"] is True
    assert data["budget_from"] == "model card" and data["name"] == "robustlab zoo: syn-lenet5"
    assert "(model card): difference +0.00, inside the interval" in out


def test_model_file_end_to_end(tmp_path, monkeypatch, capsys):
    from safetensors.torch import save_file

    (tmp_path / "net.py").write_text(
        "from torch import nn\n\ndef make():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))\n")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    monkeypatch.chdir(tmp_path)
    code, out, _ = _bench(capsys, "--model", "net.py:make", "--weights", "w.safetensors",
                          "--dataset", "synthetic", "--eps", "0.3", "--images", "8")
    assert code == 0
    data = json.loads(Path("benchmark-net.json").read_text())
    assert data["source"] == {"kind": "model", "name": "net.py:make",
                              "weights": "w.safetensors"}
    assert data["budget_from"] == "--eps" and data["n"] == 8


# ---- bad input: one line, exit 2, before any compute ---------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    ([], "give one of RUN, --robustbench NAME, --pretrained NAME or --model"),
    (["run", "--pretrained", "x"], "got RUN and --pretrained"),
    (["--pretrained", "x", "--weights", "w"], "--weights goes with --model, not --pretrained"),
    (["--pretrained", "x", "--dataset", "mnist"], "--dataset goes with --model or"),
    (["--pretrained", "x", "--download"], "--download goes with --robustbench"),
    (["--pretrained", "x", "--images", "0"], "--images: expected an integer >= 1, got 0"),
    (["--pretrained", "x", "--eps", "0"], "--eps: expected a finite number > 0, got 0.0"),
    (["--robustbench", TINY.name, "--eps", "2", "--data-dir", "data", "--images", "2"],
     "eps: 2 exceeds 1, the whole pixel range"),  # Linf: the image cube's side
    (["--pretrained", "nope"], "unknown pretrained model 'nope'"),
    (["--robustbench", "Carmon2019Unlabelled"], "close names: Carmon2019Unlabeled"),
    (["--model", "net.py:make"], "--dataset: required with --model"),
    (["--model", "net.py:make", "--dataset", "synthetic"], "--eps: required for model"),
    (["--robustbench", TINY.name, "--norm", "l3"], "norm"),
    (["--robustbench", TINY.name, "--images", "11", "--data-dir", "data"],
     "--images: 11 exceeds the 10 test images of cifar10"),
    (["--robustbench", TINY.name, "--data-dir", "data"],
     "--images: 10000 (the default, RobustBench's full test set) exceeds the 10 test images"),
])
def test_bad_input_is_one_line_before_any_compute(tiny, monkeypatch, capsys, args, message):
    def no_compute(*a, **k):
        raise AssertionError("attacked despite bad input")

    monkeypatch.setattr(bench, "evaluate_model", no_compute)
    code, out, err = _bench(capsys, *args, *(["--robustbench-file", str(tiny)]
                                             if "--robustbench" in args else []))
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("robustlab benchmark: error: ")


def test_an_existing_file_of_someone_else_is_never_replaced(tiny, capsys):
    Path(f"benchmark-{TINY.name}.json").write_text("{\"mine\": 1}")
    code, _, err = _bench(capsys, "--robustbench", TINY.name, "--robustbench-file", str(tiny),
                          "--images", "4", "--data-dir", "data", "--overwrite")
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    assert json.loads(Path(f"benchmark-{TINY.name}.json").read_text()) == {"mine": 1}


def test_a_killed_benchmark_resumes_from_its_finished_batches(run, tmp_path, monkeypatch,
                                                              capsys):
    """A 10,000-image AutoAttack is hours on a CPU: a benchmark interrupted after its first
    batch attacks only the remaining batch when rerun, and writes the same JSON as an
    uninterrupted run (timings aside); the partial file is gone once the JSON is written."""
    import robustlab.evaluation.attack_runner as runner

    real, calls = runner._attack_batch, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill between the two batches
        return real(*a, **k)

    out_file = tmp_path / "b.json"
    args = [str(run), "--images", "8", "--batch-size", "4", "--out", str(out_file)]
    monkeypatch.setattr(runner, "_attack_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bench.run_benchmark(bench.run_source(str(run)), images=8, batch_size=4,
                            device="cpu", out=str(out_file))
    partial = tmp_path / ".b.json.partial"
    assert partial.is_file() and not out_file.exists()

    calls.clear()
    monkeypatch.setattr(runner, "_attack_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert _bench(capsys, *args)[0] == 0
    assert len(calls) == 1 and not partial.exists()  # the second batch only
    resumed = json.loads(out_file.read_text())
    calls.clear()
    assert _bench(capsys, *args[:-1], str(tmp_path / "clean.json"))[0] == 0
    assert len(calls) == 2
    clean = json.loads((tmp_path / "clean.json").read_text())
    for key in ("clean", "autoattack", "weights_sha256", "eps_value"):
        assert resumed[key] == clean[key]
