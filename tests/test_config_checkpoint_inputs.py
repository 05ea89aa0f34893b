"""Bad inputs of training configs, checkpoints, APGD's options and eval files (issue #32's
corpus): each refused with one line, or accepted with the documented warning."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest

import robustlab.training.loop as loop
from robustlab.attacks import AttackError, create_attack
from robustlab.cli import main
from robustlab.common.files import FileFormatError
from robustlab.common.result_checks import check_eval_values
from robustlab.runs.checkpoint import RUN_CONFIG_KEY, WeightsError, load_state, save_state
from robustlab.runs.config import MAX_BATCH_SIZE, MAX_EPOCHS
from robustlab.training import ConfigError, TrainConfig, train

TINY = {"n_train": 64, "n_test": 16}


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(dataset="synthetic", dataset_options=dict(TINY), model="lenet5", epochs=2,
                batch_size=32, recipe="none", progress=False, device="cpu", threads=1,
                out_dir=str(out))
    return TrainConfig(**{**base, **kw})


class _Killed(Exception):
    pass


def _unfinished(out: Path, monkeypatch, seed: int = 0) -> Path:
    """A run interrupted after its first epoch's writes (checkpoint kept), as a kill."""
    real, calls = loop._train_epoch, []

    def epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise _Killed
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(loop, "_train_epoch", epoch)
        with pytest.raises(_Killed):
            train(_cfg(out, seed=seed))
    assert (out / "checkpoint.safetensors").is_file()
    return out


# ---- TrainConfig: upper bounds of the counts ---------------------------------------------

@pytest.mark.parametrize("field,value,bound", [("epochs", 2**70, MAX_EPOCHS),
                                               ("batch_size", 2**40, MAX_BATCH_SIZE),
                                               ("epochs", MAX_EPOCHS + 1, MAX_EPOCHS)])
def test_epochs_and_batch_size_have_an_upper_bound(tmp_path, field, value, bound):
    with pytest.raises(ConfigError, match=rf"^{field}: expected an integer in \[1, {bound}\], "
                                          rf"got {value}$"):
        _cfg(tmp_path, **{field: value}).validate()


def test_the_largest_epochs_and_batch_size_are_accepted(tmp_path):
    _cfg(tmp_path, epochs=MAX_EPOCHS, batch_size=MAX_BATCH_SIZE).validate()


def test_cli_refuses_a_huge_epoch_count_in_one_line(tmp_path, capsys, monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("reached training: 2**70 epochs would never end")

    monkeypatch.setattr(loop, "_run_epochs", reached)
    argv = ["train", "--dataset", "synthetic", "--epochs", "1180591620717411303424",
            "--device", "cpu", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("robustlab train: error: epochs: expected an integer in [1, 100000], got "
                   "1180591620717411303424")
    assert not (tmp_path / "run").exists()


# ---- APGD: momentum in [0, 1], rho in (0, 1) ----------------------------------------------

@pytest.mark.parametrize("name", ["apgd-ce", "apgd-dlr", "apgd-t"])
@pytest.mark.parametrize("option,value,expected", [
    ("momentum", 1.5, "momentum: expected a finite number in [0, 1], got 1.5"),
    ("momentum", -0.1, "momentum: expected a finite number in [0, 1], got -0.1"),
    ("rho", 2, "rho: expected a finite number > 0 and < 1, got 2"),
    ("rho", 1.0, "rho: expected a finite number > 0 and < 1, got 1.0"),
    ("rho", 0, "rho: expected a finite number > 0 and < 1, got 0"),
])
def test_apgd_refuses_momentum_and_rho_out_of_range(name, option, value, expected):
    with pytest.raises(AttackError) as err:
        create_attack(name, eps=0.1, **{option: value})
    assert str(err.value) == f"{name}.{expected}"  # named as --attack-opt spells it


@pytest.mark.parametrize("options", [{"momentum": 0.0}, {"momentum": 1.0}, {"rho": 0.5},
                                     {"momentum": 0.75, "rho": 0.75}])
def test_apgd_accepts_its_whole_ranges(options):
    attack = create_attack("apgd-ce", eps=0.1, **options)
    for key, value in options.items():
        assert getattr(attack, key) == value


# ---- checkpoints: bound to their run; resume says what it does -----------------------------

def test_a_checkpoint_copied_from_another_run_is_refused(tmp_path, monkeypatch):
    run = _unfinished(tmp_path / "a", monkeypatch, seed=0)
    other = _unfinished(tmp_path / "b", monkeypatch, seed=1)
    shutil.copy(other / "checkpoint.safetensors", run / "checkpoint.safetensors")
    with pytest.raises(WeightsError, match=r"checkpoint.safetensors: written by another run .*"
                                           r"pass --overwrite"):
        train(_cfg(run, seed=0), resume=True)
    assert (run / "checkpoint.safetensors").is_file()  # nothing was overwritten


def test_the_runs_own_checkpoint_and_a_moved_run_resume(tmp_path, monkeypatch):
    """The digest leaves out the resume-free fields: a run folder moved elsewhere (out_dir
    differs) still resumes from its own checkpoint."""
    moved = tmp_path / "moved"
    shutil.move(_unfinished(tmp_path / "a", monkeypatch), moved)
    assert RUN_CONFIG_KEY in load_state(moved / "checkpoint.safetensors")
    result = train(_cfg(moved), resume=True)
    assert [m["epoch"] for m in result.metrics] == [1, 2]


def test_a_checkpoint_without_the_run_digest_resumes_as_before(tmp_path, monkeypatch):
    run = _unfinished(tmp_path / "a", monkeypatch)
    state = load_state(run / "checkpoint.safetensors")
    old = copy.copy(state)
    del old[RUN_CONFIG_KEY]  # as written before checkpoints were bound to their run
    save_state(run / "checkpoint.safetensors", old)
    result = train(_cfg(run), resume=True)
    assert [m["epoch"] for m in result.metrics] == [1, 2]


def test_resume_with_the_checkpoint_missing_warns_that_it_restarts(tmp_path, monkeypatch,
                                                                    capsys):
    run = _unfinished(tmp_path / "a", monkeypatch)
    (run / "checkpoint.safetensors").unlink()
    capsys.readouterr()
    result = train(_cfg(run), resume=True)
    err = capsys.readouterr().err
    assert (f"warning: resuming {run}: its checkpoint.safetensors is missing, so training "
            "restarts from epoch 0 and its metrics.jsonl (1 finished epoch(s)) will be "
            "overwritten") in err
    assert [m["epoch"] for m in result.metrics] == [1, 2]


def test_resume_of_a_missing_folder_says_it_starts_a_new_run(tmp_path, capsys):
    result = train(_cfg(tmp_path / "new", epochs=1), resume=True)
    err = capsys.readouterr().err
    assert f"warning: nothing to resume at {tmp_path / 'new'}: starting a new run" in err
    assert result.summary["epochs_done"] == 1


def test_a_plain_run_and_a_real_resume_do_not_warn(tmp_path, monkeypatch, capsys):
    run = _unfinished(tmp_path / "a", monkeypatch)
    capsys.readouterr()
    train(_cfg(run), resume=True)
    assert "warning" not in capsys.readouterr().err


# ---- robustlab train: warnings of the CLI -------------------------------------------------

def _train_argv(out: Path, *extra: str) -> list[str]:
    return ["train", "--dataset", "synthetic", "--set", "dataset_options={n_train: 64, "
            "n_test: 16}", "--epochs", "1", "--no-progress", "--recipe", "none", "--device",
            "cpu", "--threads", "1", *extra, "--out", str(out)]


def test_eps_for_standard_training_warns_that_it_is_ignored(tmp_path, capsys):
    assert main(_train_argv(tmp_path / "run", "--eps", "0.5")) == 0
    err = capsys.readouterr().err
    assert ("warning: method 'standard' trains without a perturbation budget: eps 0.5 is "
            "ignored") in err


def test_eps_for_adversarial_training_does_not_warn(tmp_path, capsys):
    argv = _train_argv(tmp_path / "run", "--method", "fgsm-rs", "--eps", "0.1")
    assert main(argv) == 0
    assert "perturbation budget" not in capsys.readouterr().err


@pytest.mark.parametrize("name", ["cfg.yaml", "cfg.toml"])
def test_an_empty_config_file_warns(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_text("")
    assert main(_train_argv(tmp_path / "run", "--config", str(path))) == 0
    err = capsys.readouterr().err
    assert (f"warning: config file {path} holds no fields: every field comes from the flags "
            "or its default") in err


# ---- eval files: cross-field checks (the report) ------------------------------------------

def _eval(**changes) -> dict:
    data = {"n": 16, "clean": {"acc": 0.5}, "worst_case": {"acc": 0.25},
            "attacks": {"fgsm": {"acc": 0.375}, "pgd": {"acc": 0.25}},
            "settings": {"eps": 0.1, "norm": "linf"}}
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = data
        for key in path:
            node = node[key]
        node[last] = value
    return data


def test_a_consistent_eval_file_passes():
    assert check_eval_values(_eval(), "e.json")
    assert check_eval_values(_eval(attacks__fgsm__acc=0.5), "e.json")  # equal is fine


@pytest.mark.parametrize("changes,message", [
    ({"n": 0}, "e.json: n: expected an integer >= 1, got 0"),
    ({"attacks__fgsm__acc": 1.0},
     "e.json: attacks.fgsm.acc: expected at most clean.acc 0.5 (an image counts as robust "
     "only if it is classified correctly clean), got 1"),
    ({"worst_case__acc": 0.75},
     "e.json: worst_case.acc: expected at most clean.acc 0.5 (an image counts as robust "
     "only if it is classified correctly clean), got 0.75"),
])
def test_an_impossible_eval_file_is_refused(changes, message):
    with pytest.raises(FileFormatError) as err:
        check_eval_values(_eval(**changes), "e.json")
    assert str(err.value) == message


def test_the_non_adaptive_part_is_checked_too():
    data = _eval(non_adaptive={"n": 16, "clean": {"acc": 0.25},
                               "attacks": {"fgsm": {"acc": 0.5}}})
    with pytest.raises(FileFormatError, match=r"^e.json: non_adaptive.attacks.fgsm.acc: "
                                              r"expected at most non_adaptive.clean.acc 0.25"):
        check_eval_values(data, "e.json")
