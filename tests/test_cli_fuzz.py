"""Fuzz the CLI: generated argument lists and config files, valid and invalid.

Whatever the input, `robustlab` must exit 0 or 2 (argparse's and robustlab's usage-error
code) with a one-line message, never a Python traceback, and must not leave a partial run
folder. Compute is cut off where it would begin (the first training step, the first attack):
by then every check has run, so reaching it counts as "accepted".
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustlab.cli import main


class ReachedCompute(Exception):
    """Raised where training or attacking would start: the input passed every check."""


def _stop(*args, **kwargs):
    raise ReachedCompute


TRAIN_VALUES = {
    "--dataset": ["synthetic", "synthetic", "mnist", "nope", "", "cifar10"],
    "--model": ["lenet5", "smallcnn", "resnet9000", ""],
    "--method": ["standard", "pgd-at", "hybrid", "trades", "gradient-reg", "nope"],
    "--eps": ["0.1", "0", "-1", "nan", "inf", "1e9", "abc", "1e-2"],
    "--norm": ["linf", "l2", "l3", "Linf"],
    "--epochs": ["1", "2", "0", "-3", "1.5", "x", "99999999999999999999999"],
    "--batch-size": ["32", "0", "-1", "x"],
    "--lr": ["0.01", "nan", "inf", "-inf", "-1", "0", "1e-3", "x"],
    "--momentum": ["0.9", "nan", "-0.1", "inf"],
    "--weight-decay": ["inf", "0", "5e-4", "nan"],
    "--lr-schedule": ["cosine", "bogus", "onecycle", "piecewise"],
    "--optimizer": ["sgd", "adam", "lbfgs"],
    "--eps-warmup": ["0", "1", "-1", "5", "nan", "inf"],
    "--eps-warmup-start": ["0.1", "2", "nan"],
    "--eps-warmup-schedule": ["linear", "zigzag"],
    "--device": ["cpu", "cuda", "cuda:7", "tpu", "auto", "bogus", "cpu:0"],
    "--seed": ["0", "-1", "x", "3"],
    "--val-size": ["0", "10", "-5", "100000"],
    "--train-size": ["64", "0", "100000000"],
    "--threads": ["1", "0", "-2"],
    "--augment": ["none", "weird", "crop-flip"],
    "--memory-format": ["auto", "sideways"],
    "--amp": ["off", "bf16", "fp8"],
    "--recipe": ["auto", "paper", "none", "bogus", "mnist-linf", "fashion-mnist-linf"],
    "--set": ["progress=maybe", "lr=1e-2", "epochs=x", "nosuch=1", "compile=yes",
              "dataset_options={n_train: -1}", "dataset_options=5", "method_options=[1]",
              "dataset_options={n_train: 64, n_test: 16}", "eps=.nan", "lr=", "=3", "lr"],
    "--opt": ["steps=2", "steps=-1", "bogus=1", "steps", "steps=nan", "schedule=cosine"],
    "--defense": ["median", "jpeg", "nope", "bit-depth"],
    "--defense-opt": ["size=-3", "quality=500", "size=3", "bits=0", "quality=x"],
    "--epoch": ["1"],  # an abbreviation of --epochs: must be refused
    "--nproc": ["0", "-1", "x"],
}
SWITCHES = ["--resume", "--overwrite", "--download", "--compile"]

EVAL_VALUES = {
    "--attacks": ["fgsm", "pgd,square", "nope", "", ",", "fgsm,fgsm", "cw-linf"],
    "--eps": ["0.1", "1e9", "nan", "-1", "inf", "x", "0"],
    "--norm": ["linf", "l2", "l3"],
    "--n": ["8", "0", "100000", "x", "-1"],
    "--batch-size": ["0", "8", "-3"],
    "--seed": ["-1", "0"],
    "--device": ["cpu", "cuda", "bogus"],
    "--nproc": ["0", "x"],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fuzz") / "run"
    args = ["train", "--dataset", "synthetic", "--set", "dataset_options={n_train: 64, "
            "n_test: 16}", "--epochs", "1", "--no-progress", "--device", "cpu", "--out", str(run)]
    assert main(args) == 0
    return run


def run_cli(args: list[str]) -> tuple[str, str]:
    """('ok' | 'usage' | 'compute', stderr). Any other exception fails the test (a traceback)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as exit_:
            code = exit_.code
        except ReachedCompute:
            return "compute", err.getvalue()
    assert code in (0, 2), (args, code, err.getvalue())
    assert "Traceback" not in err.getvalue(), (args, err.getvalue())
    if code == 2:
        lines = [ln for ln in err.getvalue().splitlines() if "error" in ln]
        assert lines, (args, err.getvalue())  # a message saying what is wrong
    return ("ok" if code == 0 else "usage"), err.getvalue()


def _flag_lists(values: dict[str, list[str]]):
    pair = st.sampled_from(sorted(values)).flatmap(
        lambda flag: st.sampled_from(values[flag]).map(lambda v: [flag, v]))
    return st.lists(pair, max_size=6).map(lambda pairs: [x for p in pairs for x in p])


FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(flags=_flag_lists(TRAIN_VALUES), switches=st.lists(st.sampled_from(SWITCHES),
                                                          max_size=2, unique=True))
def test_train_arguments_never_traceback_nor_leave_a_partial_run(flags, switches, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr("robustlab.training.loop.wrap_model", _stop)
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "no-data-here"))
    out = tmp_path / "fuzz-run"
    args = ["train", "--dataset", "synthetic", "--set",
            "dataset_options={n_train: 64, n_test: 16}", "--no-progress", *flags, *switches,
            "--out", str(out)]
    outcome, _ = run_cli(args)
    if outcome == "usage":
        assert not out.exists() or not any(out.iterdir()), args
    if out.exists():  # an accepted run stopped at its first step: resumable, as after a kill
        import shutil

        shutil.rmtree(out)


@FUZZ
@given(flags=_flag_lists(EVAL_VALUES))
def test_evaluate_arguments_never_traceback(flags, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setattr("robustlab.evaluation.runs.evaluate_loaded_run", _stop)
    out = tmp_path / "eval-fuzz.json"
    out.unlink(missing_ok=True)
    outcome, _ = run_cli(["evaluate", str(tiny_run), *flags, "--out", str(out)])
    assert not out.exists()  # refused before compute, or stopped at it: nothing written


_FIELDS = ["dataset", "model", "method", "eps", "lr", "epochs", "progress", "dataset_options",
           "train", "seed", "nosuch", "device", "batch_size", "eps_warmup"]
_SCALARS = st.one_of(st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                     st.booleans(), st.text(max_size=6), st.none(),
                     st.sampled_from(["synthetic", "lenet5", "pgd-at", "1e-3", "cpu", "maybe"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_FIELDS), inner, max_size=3)),
    max_leaves=6)


def _yaml_text(data) -> str:
    return json.dumps(data, allow_nan=True)  # JSON is YAML 1.2 (NaN/Infinity become strings)


@FUZZ
@given(data=st.one_of(st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=5), _VALUES),
       suffix=st.sampled_from([".yaml", ".yml", ".toml", ".json"]),
       garbage=st.one_of(st.none(), st.binary(max_size=40)))
def test_config_files_never_traceback(data, suffix, garbage, tmp_path, monkeypatch):
    monkeypatch.setattr("robustlab.training.loop.wrap_model", _stop)
    path = tmp_path / f"fuzz{suffix}"
    if garbage is not None:
        path.write_bytes(garbage)
    elif suffix == ".toml":
        path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in
                                  (data.items() if isinstance(data, dict) else [("x", data)])))
    else:
        path.write_text(_yaml_text(data))
    out = tmp_path / "cfg-run"
    outcome, _ = run_cli(["train", "--config", str(path), "--no-progress", "--out", str(out)])
    if outcome == "usage":
        assert not out.exists() or not any(out.iterdir())
    if out.exists():
        import shutil

        shutil.rmtree(out)


@pytest.mark.parametrize("args", [
    ["reproduce", "--preset", "nope"], ["reproduce", "--preset", "smoke", "--workers", "0"],
    ["reproduce", "--preset", "smoke", "--threads", "-1"], ["report", "/nonexistent/dir"],
    ["evaluate", "/nonexistent/run"], ["list", "nothing"], ["train", "--epoch", "1"],
    ["evaluate"], [], ["--version-typo"],
])
def test_other_commands_fail_in_one_line(args):
    outcome, err = run_cli(args)
    assert outcome in ("usage", "ok")
