"""Bad configuration inputs fail with a one-line error naming the file and field, before any
compute: config files, TrainConfig values, recorded run configs, defense and dataset options."""

from __future__ import annotations

import json
import math

import pytest
import torch

from robustlab.cli import main
from robustlab.data import DataError
from robustlab.data.mnist import MNIST_INFO
from robustlab.defenses import DefenseError, create_defense
from robustlab.runs.build import build_model, load_run_data
from robustlab.runs.config import ConfigError, TrainConfig, load_config_file
from robustlab.runs.folder import RunFolderError
from robustlab.runs.load import load_run

CPU = torch.device("cpu")


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    _, err = capsys.readouterr()
    return code, err


# ----------------------------------------------------------------------------- config files


@pytest.mark.parametrize("name, content, words", [
    ("malformed.yaml", b"lr: [0.1, 0.2\n", ["cannot parse"]),
    ("latin1.yaml", b"lr: 0.1\n# caf\xe9\n", ["not UTF-8", "0xe9"]),
    ("latin1.toml", b"lr = 0.1\n# caf\xe9\n", ["not UTF-8"]),
    ("train5.yaml", b"train: 5\n", ["train: expected a table", "int 5"]),
    ("list.yaml", b"- lr\n- 0.1\n", ["must hold a table", "list"]),
    ("beside.toml", b'epochs = 3\n[train]\nlr = 0.1\n', ["epochs", "beside the train table"]),
    ("beside.yaml", b"epochs: 3\ntrain:\n  lr: 0.1\n", ["epochs", "beside the train table"]),
    ("intkey.yaml", b"1: 2\n", ["field names must be strings", "1"]),
])
def test_bad_config_file_is_a_config_error_naming_the_file(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        load_config_file(path)
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg
    for word in words:
        assert word in msg


def test_yaml_config_reads_yaml_12_floats_and_train_table(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-3\n  eps: 3E-1\n  weight_decay: .5\n  epochs: 2\n")
    data = load_config_file(path)
    assert data == {"lr": 0.001, "eps": 0.3, "weight_decay": 0.5, "epochs": 2}
    assert isinstance(data["lr"], float) and isinstance(data["epochs"], int)
    (tmp_path / "empty.yaml").write_text("")
    assert load_config_file(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize("content", [b"lr: [0.1\n", b"train: 5\n", b"lr: 0.1\n\xff\xfe\n"])
def test_cli_train_with_bad_config_file_exits_2_without_traceback(tmp_path, capsys, content):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    code, err = run_cli(capsys, "train", "--config", str(path), "--out", str(tmp_path / "run"))
    assert code == 2
    assert "Traceback" not in err and str(path) in err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- TrainConfig


@pytest.mark.parametrize("field", ["lr", "momentum", "weight_decay", "eps", "eps_warmup",
                                   "eps_warmup_start"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**400])
def test_non_finite_numbers_are_rejected(field, value):
    cfg = TrainConfig(method="pgd-at", eps=0.3, epochs=2).replace(**{field: value})
    with pytest.raises(ConfigError, match=rf"^{field}: expected .*got "):
        cfg.validate()


@pytest.mark.parametrize("change", [
    dict(progress="maybe"), dict(download=1), dict(compile="yes"), dict(progress=None),
    dict(dataset_options=[("verify", False)]), dict(method_options="k=2"),
    dict(defense_options=None), dict(method_options={1: 2}), dict(dataset_options={None: 1}),
    dict(dataset=5), dict(model=None), dict(method=["standard"]), dict(norm=1),
    dict(device=0), dict(optimizer={"sgd": 1}), dict(augment=True), dict(amp=0),
    dict(out_dir=3), dict(data_dir=["/data"]), dict(defense=1), dict(recipe=2.0),
])
def test_wrong_types_are_rejected_naming_the_field(change):
    (field, value), = change.items()
    with pytest.raises(ConfigError) as exc:
        TrainConfig(**change).validate()
    msg = str(exc.value)
    assert msg.startswith(f"{field}: expected ") and repr(value)[:20] in msg


def test_valid_types_still_pass():
    cfg = TrainConfig(out_dir="runs/x", data_dir=None, progress=False, download=False,
                      dataset_options={"verify": False}, lr=1e-3, device="auto")
    assert cfg.validate() is cfg
    TrainConfig(device="cpu").validate()


def test_cuda_device_without_cuda_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match=rf"^device: '{name}' requested"):
            TrainConfig(device=name).validate()
    TrainConfig(device="auto").validate()  # auto falls back to the CPU


def test_cuda_index_out_of_range_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"^device: 'cuda:3'.*1 CUDA device"):
        TrainConfig(device="cuda:3").validate()


@pytest.mark.parametrize("args, message", [
    (["--lr", "nan"], "lr: expected a finite number"),
    (["--momentum", "inf"], "momentum: expected a finite number"),
    (["--set", "progress=maybe"], "progress: expected true or false, got 'maybe'"),
    (["--set", "dataset_options=[1]"], "dataset_options: expected a table"),
])
def test_cli_train_rejects_bad_values_before_compute(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code, err = run_cli(capsys, "train", "--train-size", "64", "--epochs", "1", "--out",
                        str(out), *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert not out.exists()


def test_cli_train_cuda_without_cuda_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = run_cli(capsys, "train", "--device", "cuda", "--train-size", "64", "--epochs",
                        "1", "--out", str(tmp_path / "run"))
    assert code == 2 and "device: 'cuda' requested" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- recorded runs


def _run_folder(tmp_path, content) -> tuple:
    run = tmp_path / "run"
    run.mkdir()
    path = run / "config.json"
    path.write_text(json.dumps(content))
    return run, path


def _train_dict(**changes):
    return {**TrainConfig(method="pgd-at", eps=0.3).to_dict(), **changes}


@pytest.mark.parametrize("changes, field", [
    (dict(eps="0.3"), "eps"), (dict(lr=-1), "lr"), (dict(progress="yes"), "progress"),
    (dict(model="lenet6"), "model"), (dict(colour="red"), "colour"),
])
def test_load_run_validates_the_recorded_config(tmp_path, changes, field):
    run, path = _run_folder(tmp_path, {"train": _train_dict(**changes)})
    with pytest.raises(RunFolderError) as exc:
        load_run(run, device="cpu")
    msg = str(exc.value)
    assert str(path) in msg and field in msg


@pytest.mark.parametrize("content", [[1, 2], {"eps": 0.3}, {"train": 5}, {"train": [1]}])
def test_load_run_rejects_wrong_typed_config_json(tmp_path, content):
    run, path = _run_folder(tmp_path, content)
    with pytest.raises(RunFolderError) as exc:
        load_run(run, device="cpu")
    assert str(path) in str(exc.value)


def test_load_run_accepts_a_valid_config_recorded_on_a_gpu_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run, _ = _run_folder(tmp_path, {"train": _train_dict(device="cuda")})
    with pytest.raises(RunFolderError, match="has no model.safetensors"):  # config passed
        load_run(run, device="cpu")


def test_cli_evaluate_run_with_string_eps_exits_2(tmp_path, capsys):
    run, path = _run_folder(tmp_path, {"train": _train_dict(eps="0.3")})
    code, err = run_cli(capsys, "evaluate", str(run), "--attacks", "fgsm", "--eps", "0.3",
                        "--device", "cpu")
    assert code == 2 and "Traceback" not in err
    assert str(path) in err and "eps" in err


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("defense, options, words", [
    ("median", {"size": -3}, ["size", "-3", ">= 1"]),
    ("median", {"size": 4}, ["size", "odd"]),
    ("jpeg", {"quality": 500}, ["quality", "500", "[1, 100]"]),
    ("bit-depth", {"bits": 0}, ["bits", "[1, 16]"]),
    ("gaussian-noise", {"sigma": -1.0}, ["sigma", "> 0"]),
    ("gaussian-noise", {"sigma": 0.1, "clip": "no"}, ["clip", "'no'"]),
])
def test_bad_defense_values_raise_naming_option_and_range(defense, options, words):
    with pytest.raises(DefenseError) as exc:
        create_defense(defense, model=torch.nn.Identity(), **options)
    assert all(w in str(exc.value) for w in words)
    cfg = TrainConfig(defense=defense, defense_options=options)
    with pytest.raises(ConfigError) as exc:
        build_model(cfg, MNIST_INFO, torch.device("cpu"))
    assert str(exc.value).startswith(f"defense_options: {defense} ")
    assert all(w in str(exc.value) for w in words)


@pytest.mark.parametrize("defense, options, words", [
    ("median", {"radius": 2}, ["unknown option(s) radius", "known: size"]),
    ("gaussian-noise", {}, ["needs option(s) sigma"]),
])
def test_unknown_or_missing_defense_option_is_a_config_error(defense, options, words):
    cfg = TrainConfig(defense=defense, defense_options=options)
    with pytest.raises(ConfigError) as exc:
        build_model(cfg, MNIST_INFO, torch.device("cpu"))
    msg = str(exc.value)
    assert msg.startswith("defense_options: ") and all(w in msg for w in words)


def test_cli_train_bad_defense_option_exits_2(tmp_path, capsys, mnist_root):
    code, err = run_cli(capsys, "train", "--data-dir", str(mnist_root), "--defense", "median",
                        "--defense-opt", "size=-3", "--train-size", "64", "--epochs", "1",
                        "--out", str(tmp_path / "run"))
    assert code == 2 and "Traceback" not in err
    assert "defense_options: median size: expected an integer >= 1, got -3" in err


def _image_tree(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        folder = tmp_path / "imgs" / "train" / cls
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(folder / f"{i}.png")
    return tmp_path / "imgs"


def test_bad_dataset_option_value_is_one_line_naming_it(tmp_path):
    """Checked against the dataset's declared options (no TypeError from deep inside)."""
    root = _image_tree(tmp_path)
    cfg = TrainConfig(dataset="imagefolder", data_dir=str(root),
                      dataset_options={"classes": 5, "image_size": 8})
    with pytest.raises(DataError) as exc:
        load_run_data(cfg, CPU)
    assert str(exc.value) == "imagefolder classes: expected a list of names, got 5"


def test_data_errors_pass_through_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = TrainConfig(dataset="mnist", data_dir=str(tmp_path / "missing"))
    with pytest.raises(DataError) as exc:
        load_run_data(cfg, CPU)
    assert not isinstance(exc.value, ConfigError) and str(tmp_path / "missing") in str(exc.value)
    bad = TrainConfig(dataset="mnist", data_dir=str(tmp_path), dataset_options={"verify": "no"})
    with pytest.raises(DataError, match=r"mnist verify: expected true or false, got 'no'"):
        load_run_data(bad, CPU)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"eps": [0.1]}, "eps: expected a number in [0, 1] (pixel scale), got [0.1]"),
    ({"method": ["pgd-at"], "eps": 0.3}, "method: expected a string, got list"),
    ({"dataset": {"name": "mnist"}}, "dataset: expected a string, got dict"),
])
def test_fields_the_recipe_reads_are_typed_first(tmp_path, capsys, fields, expected):
    """A recipe is chosen from dataset, method, norm and eps before the config is validated:
    their types are checked first, so a list or a table there is one line, not a TypeError
    from inside the recipe table (found by tests/test_cli_fuzz.py)."""
    path = tmp_path / "cfg.yaml"  # JSON is YAML
    path.write_text(json.dumps(fields))
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("robustlab train: error: ") and expected in err, err
    assert not (tmp_path / "run").exists()
