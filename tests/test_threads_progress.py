"""Issue #37: `--threads N|auto` on every command (one helper, `common/threads.py`), the
"auto" policy and its warning; progress inside an attack (`attacks/progress.py`,
`evaluation/progress.py`): a line per AutoAttack component with its robust accuracy in a
log, step groups of the long attacks, nothing with progress off."""

from __future__ import annotations

import io
import re

import pytest
import torch

import robustlab
from robustlab.attacks.progress import AttackStep, callback_of, reporting
from robustlab.cli import main
from robustlab.common import threads as T
from robustlab.common.errors import ConfigError
from robustlab.evaluation.attack_runner import build_attack, run_attack
from robustlab.evaluation.progress import Progress
from robustlab.models import create_model


class Reached(Exception):
    """Raised by a stubbed command body: the CLI got as far as the command's work."""


# Each command, its arguments, and the function its work starts in (stubbed here).
COMMANDS = {
    "train": (["--dataset", "synthetic", "--no-progress"], "robustlab.training.train"),
    "evaluate": (["some/run"], "robustlab.evaluation.runs.evaluate_runs"),
    "certify": (["some/run"], "robustlab.certification.study.certify_run"),
    "export": (["some/run", "--out", "m.pt"], "robustlab.runs.export.export_model"),
    "transfer": (["a", "b"], "robustlab.experiments.transfer_study.run_transfer_study"),
    "reproduce": (["--preset", "smoke", "--device", "cpu"],
                  "robustlab.experiments.runner.reproduce"),
    "report": (["some/dir"], "robustlab.reporting.write_report"),
    "list": ([], "robustlab.catalog.all_names"),
}


def _stub(monkeypatch, target: str, seen: dict) -> None:
    def record(*args, **kwargs):
        seen["threads"] = torch.get_num_threads()
        seen["args"], seen["kwargs"] = args, kwargs
        raise Reached

    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(module + "." + name, record)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_applies_threads_and_restores_them(command, monkeypatch):
    args, target = COMMANDS[command]
    seen: dict = {}
    _stub(monkeypatch, target, seen)
    monkeypatch.setattr("robustlab.data.load_dataset", lambda *a, **k: None)  # reproduce
    torch.set_num_threads(1)
    with pytest.raises(Reached):
        main([command, *args, "--threads", "3"])
    assert seen["threads"] == 3
    assert torch.get_num_threads() == 1  # restored when the command ends
    if command == "train":  # an explicit count is also the run's TrainConfig.threads
        assert seen["args"][0].threads == 3
    if command == "reproduce":  # reproduce's is per worker
        assert seen["kwargs"]["threads"] == 3


def test_auto_follows_omp_num_threads_and_train_records_nothing(monkeypatch):
    seen: dict = {}
    _stub(monkeypatch, "robustlab.training.train", seen)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    torch.set_num_threads(1)
    with pytest.raises(Reached):
        main(["train", "--dataset", "synthetic", "--no-progress"])  # --threads auto
    assert seen["threads"] == 2
    assert seen["args"][0].threads is None  # auto is the machine's choice, not the run's


@pytest.mark.parametrize("command", ["evaluate", "certify", "export", "list", "train"])
@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""])
def test_bad_thread_values_fail_in_one_line(command, value, capsys):
    args = COMMANDS[command][0]
    with pytest.raises(SystemExit) as exc:
        main([command, *args, "--threads", value])
    assert exc.value.code == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert errors == [f"robustlab {command}: error: argument --threads: expected an integer "
                      f">= 1 or auto, got {value!r}"]


@pytest.mark.parametrize("machine, expected", [
    (T.Machine(2, 0.05, None), 2),   # idle: every core (torch's own default)
    (T.Machine(2, 0.6, None), 1),    # one core mostly busy
    (T.Machine(2, 1.0, None), 1),    # one other CPU-bound process
    (T.Machine(2, 7.5, None), 1),    # overloaded: never below 1
    (T.Machine(16, 3.2, None), 13),
    (T.Machine(16, 0.0, None), 16),
    (T.Machine(4, 3.0, 3), 3),       # OMP_NUM_THREADS wins
    (T.Machine(8, None, None), 8),   # no load average: every core
    (T.Machine(2, 1.9, None, 0.1), 2),  # the load was the last command's: idle now
    (T.Machine(2, 0.6, None, 1.0), 1),  # busy now, whatever the average says
])
def test_auto_policy(machine, expected):
    assert T.auto_threads(machine).threads == expected
    assert T.choose_threads("auto", machine).threads == expected
    assert T.choose_threads(None, machine).threads == expected


def test_too_many_threads_for_the_free_cores_warn():
    busy = T.Machine(2, 1.3, None)
    warning = T.choose_threads(2, busy).warning
    assert warning is not None and "--threads 2" in warning
    assert "keep 1.30 of 2 cores busy" in warning
    assert "--threads 1" in warning
    assert T.choose_threads(1, busy).warning is None  # one thread never waits for another
    assert T.choose_threads(2, T.Machine(2, 0.2, None)).warning is None
    assert T.auto_threads(T.Machine(2, 1.3, 2)).warning is not None  # OMP says 2: warned too
    with pytest.raises(ConfigError, match="threads: expected an integer >= 1, got 0"):
        T.choose_threads(0, busy)


def test_busy_now_is_the_machines_cpu_time_less_our_own(monkeypatch):
    snapshots = iter([(100.0, 5.0, 0.0), (100.5, 5.3, 0.25)])  # 0.5 s busy, 0.3 s ours
    monkeypatch.setattr(T, "_cpu_snapshot", lambda cpus: next(snapshots))
    monkeypatch.setattr(T.time, "sleep", lambda s: None)
    assert T.others_busy_now(0.25) == pytest.approx(0.8)
    monkeypatch.setattr(T, "_cpu_snapshot", lambda cpus: (_ for _ in ()).throw(OSError))
    assert T.others_busy_now(0.25) is None  # no /proc/stat: the load average decides


def test_the_cli_prints_the_warning_once(monkeypatch, capsys):
    monkeypatch.setattr(T, "read_machine", lambda: T.Machine(2, 1.9, None))
    assert main(["list", "datasets", "--threads", "2"]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "--threads 2" in warnings[0]


def test_python_evaluate_takes_threads(monkeypatch):
    import robustlab.evaluation.api as api

    seen = []
    real = api.evaluate_model
    monkeypatch.setattr(api, "evaluate_model",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k))
    model, x, y = _tiny()
    torch.set_num_threads(1)
    result = robustlab.evaluate(model, x, y, eps=0.05, attacks=["fgsm"], threads=2)
    assert seen == [2] and torch.get_num_threads() == 1 and result.n == len(x)


# ----------------------------------------------------------------------------- progress

def _tiny(n: int = 16):
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_channels=1, mean=[0.5], std=[0.5],
                         image_size=28).eval()
    x = torch.rand(n, 1, 28, 28)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 10  # two clean errors
    return model, x, y


AA_OPTIONS = {"steps": 3, "n_target_classes": 2, "n_queries": 20}
COMPONENT_LINE = re.compile(r"^    (apgd-ce|apgd-t|fab-t|square): robust accuracy "
                            r"(\d+\.\d) % \((\d+) images, \d+ s\)$")


def _run(name: str, options: dict, progress: Progress | None, *, eps: float = 0.01,
         batch_size: int = 16):
    model, x, y = _tiny()
    attack = build_attack(name, eps=eps, norm="linf", seed=0, adaptive=True, options=options)
    correct = model(x).argmax(1) == y
    if progress is None:
        return attack, run_attack(attack, model, x, y, correct, eps=eps, norm="linf",
                                  batch_size=batch_size, keep_adv=True)
    with progress.stage(name, len(x)) as stage:
        out = run_attack(attack, model, x, y, correct, eps=eps, norm="linf",
                         batch_size=batch_size, progress=stage, keep_adv=True)
    return attack, out


def test_autoattack_logs_each_component_with_its_robust_accuracy(one_thread):
    log = io.StringIO()  # not a terminal: log lines
    attack, out = _run("autoattack", AA_OPTIONS, Progress(True, log))
    lines = log.getvalue().splitlines()
    assert lines[0] == "  autoattack: 16 images ..."
    matches = [COMPONENT_LINE.match(ln) for ln in lines[1:-1]]
    assert all(matches), lines
    assert [m.group(1) for m in matches] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    accs = [float(m.group(2)) for m in matches]
    assert accs == sorted(accs, reverse=True) and accs[0] <= 100 * 14 / 16  # never rises
    assert accs[-1] == pytest.approx(100 * float(out.robust.float().mean()), abs=0.05)
    assert re.fullmatch(r"  autoattack: done in \d+\.\d s", lines[-1])
    assert callback_of(attack) is None  # the callback lived for the call only


def test_components_accumulate_over_batches(one_thread):
    log = io.StringIO()
    _run("autoattack", AA_OPTIONS, Progress(True, log), batch_size=10)
    images = [int(m.group(3)) for m in map(COMPONENT_LINE.match, log.getvalue().splitlines())
              if m]
    assert images == [10] * 4 + [16] * 4  # running accuracy over the images attacked so far


@pytest.mark.parametrize("name, options, total", [
    ("square", {"n_queries": 41}, 40), ("fab-t", {"steps": 10, "n_target_classes": 2}, 20),
    ("cw-l2", {"steps": 10, "binary_search_steps": 2, "abort_early": False}, 20),
])
def test_long_attacks_log_step_groups(name, options, total, one_thread):
    log = io.StringIO()
    _run(name, options, Progress(True, log, log_every=0), eps=0.3 if name != "cw-l2" else 0.01)
    steps = re.findall(rf"^    {name}: step (\d+)/(\d+), (.+?) (\d+\.\d) % of the batch",
                       log.getvalue(), re.M)
    assert steps, log.getvalue()
    assert {int(t) for _, t, _, _ in steps} == {total}
    done = [int(d) for d, _, _, _ in steps]
    assert done == sorted(done) and len(done) <= 20 + 1


def test_progress_off_prints_nothing_and_changes_nothing(one_thread, capsys):
    log = io.StringIO()
    heard = []
    _, quiet = _run("autoattack", AA_OPTIONS, Progress(False, log))
    attack, plain = _run("autoattack", AA_OPTIONS, None)
    with reporting(attack, heard.append):  # a bare attack call with a callback attached
        model, x, y = _tiny()
        x_adv = attack(model, x, y)
    _, loud = _run("autoattack", AA_OPTIONS, Progress(True, io.StringIO()))
    assert log.getvalue() == "" and capsys.readouterr().err == ""
    assert torch.equal(quiet.x_adv, plain.x_adv) and torch.equal(loud.x_adv, plain.x_adv)
    assert torch.equal(x_adv, plain.x_adv)
    assert [s.stage for s in heard if s.final] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert all(isinstance(s, AttackStep) and s.n == 16 for s in heard)


def test_a_terminal_gets_a_bar_with_the_component_lines_above_it(one_thread):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Terminal()
    _run("autoattack", AA_OPTIONS, Progress(True, tty))
    text = tty.getvalue()
    assert "16/16" in text and "square done, robust accuracy" in text
    assert len(re.findall(r"  (apgd-ce|apgd-t|fab-t|square): robust accuracy", text)) == 4


def test_evaluate_reports_components_on_stderr(one_thread, capsys):
    model, x, y = _tiny()
    robustlab.evaluate(model, x, y, eps=0.01, attacks=["autoattack"],
                       attack_options={"autoattack": AA_OPTIONS}, progress=True)
    err = capsys.readouterr().err
    assert len([ln for ln in err.splitlines() if COMPONENT_LINE.match(ln)]) == 4, err


# ------------------------------------------------------------------------------- resume
KILL_AT_RENAME = r"""
import os, signal, sys
root, k = os.path.realpath(sys.argv[1]), int(sys.argv[2])
count = [0]
real = os.replace
def replace(src, dst, *args, **kwargs):
    out = real(src, dst, *args, **kwargs)
    if os.path.realpath(os.fspath(dst)).startswith(root + os.sep):
        count[0] += 1
        if count[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill, just after the k-th rename
    return out
os.replace = replace
from robustlab.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items()
                if "time" not in k and k not in ("seconds", "timing", "digest", "sha256")}
    return obj


@pytest.mark.integration  # a killed subprocess
def test_a_killed_evaluation_resumes_from_its_finished_batches(tmp_path, monkeypatch):
    import json
    import subprocess
    import sys

    import robustlab.evaluation.attack_runner as runner

    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--set",
                 "dataset_options={n_train: 64, n_test: 64}", "--epochs", "1", "--no-progress",
                 "--device", "cpu", "--threads", "1", "--out", str(run)]) == 0
    args = ["evaluate", str(run), "--attacks", "fgsm,pgd", "--n", "64", "--batch-size", "16",
            "--eps", "0.1", "--no-audit", "--no-curve", "--device", "cpu", "--threads", "1",
            "--no-progress"]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, str(run), "5", *args],
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr  # after fgsm's 4 batches and pgd's first
    partial = run / ".eval.json.partial"
    assert partial.is_file() and not (run / "eval.json").exists()

    calls = []
    real = runner._attack_batch
    monkeypatch.setattr(runner, "_attack_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(args) == 0
    assert len(calls) == 3  # pgd's last 3 batches only
    assert not partial.exists()  # deleted once eval.json is written
    resumed = json.loads((run / "eval.json").read_text())

    calls.clear()
    assert main([*args, "--out", str(tmp_path / "clean.json")]) == 0  # uninterrupted
    assert len(calls) == 8
    clean = json.loads((tmp_path / "clean.json").read_text())
    assert _untimed(resumed) == _untimed(clean)
    assert resumed["per_sample"] == clean["per_sample"]
