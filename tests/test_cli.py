"""The command line: help, list, and errors that name the field before any compute."""

from __future__ import annotations

import pytest

from robustlab.cli import main
from robustlab.registry import Registry, RegistryError


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["train", "evaluate", "list", "reproduce", "report"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: robustlab" in capsys.readouterr().out


def test_list_names_every_kind(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert set(lines) == {"datasets", "models", "methods", "attacks", "defenses", "recipes",
                          "pretrained"}
    assert "mnist" in lines["datasets"] and "lenet5" in lines["models"]
    assert "hybrid" in lines["methods"] and "autoattack" in lines["attacks"]
    assert "bit-depth" in lines["defenses"]


@pytest.mark.parametrize("args, message", [
    (["--model", "lenet6"], "model: unknown model 'lenet6'"),
    (["--eps", "1.5", "--method", "pgd-at"], "eps: expected a number in [0, 1]"),
    (["--batch-size", "0"], "batch_size: expected an integer in [1, 1048576], got 0"),
    (["--method", "hybrid"], "eps: method 'hybrid' is adversarial and needs a budget"),
    (["--set", "colour=red"], "unknown field(s) colour"),
    (["--opt", "warp=9", "--method", "hybrid", "--eps", "0.3"], "method_options"),
    (["--lr-schedule", "warp"], "lr_schedule: expected one of"),
])
def test_train_errors_name_the_field(args, message, capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "run"), *args)
    assert code == 2
    assert message in err
    assert not (tmp_path / "run").exists()  # failed before writing anything


def test_missing_data_lists_every_place_searched(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    code, _, err = run_cli(capsys, "train", "--dataset", "mnist", "--out", str(tmp_path / "r"))
    assert code == 2
    assert str(tmp_path / "nowhere") in err and "ROBUSTLAB_DATA" in err
    assert "--download" in err and "--data-dir" in err
    assert not (tmp_path / "r").exists()


def test_bad_typed_flag_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "three"])
    assert exc.value.code == 2
    assert "--epochs: expected int, got 'three'" in capsys.readouterr().err


def test_evaluate_missing_run_folder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path / "missing"), "--eps", "0.3")
    assert code == 2 and "missing" in err


def test_registry_rejects_duplicates_and_suggests_names():
    reg = Registry("widget")
    reg.register("pgd")(lambda: 1)
    with pytest.raises(RegistryError, match="duplicate widget name 'pgd'"):
        reg.register("pgd")(lambda: 2)
    with pytest.raises(RegistryError, match="Did you mean 'pgd'"):
        reg.get("pdg")
    assert reg.create("pgd") == 1 and reg.list() == ["pgd"] and "pgd" in reg


def test_reproduce_checks_every_dataset_before_any_run(capsys, tmp_path, mnist_root):
    """paper-cpu needs MNIST and Fashion-MNIST: with only MNIST present, reproduce must stop
    before training anything (not after the first dataset's runs)."""
    code, _, err = run_cli(capsys, "reproduce", "--preset", "paper-cpu", "--data-dir",
                           str(mnist_root), "--out", str(tmp_path / "exp"), "--no-report")
    assert code == 2
    assert "fashion-mnist" in err and "not found" in err
    assert not (tmp_path / "exp").exists()


def test_train_help_says_what_every_flag_means(capsys):
    """No entry of `train --help` is a bare field name; --save-adv (which train never honoured)
    is refused by the parser instead of being accepted and ignored."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "TrainConfig." not in out.replace("TrainConfig fields", "")
    assert "pixel units" in out and "--save-adv" not in out
    with pytest.raises(SystemExit) as exc:
        main(["train", "--save-adv", "adv"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --save-adv" in capsys.readouterr().err
