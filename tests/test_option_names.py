"""One name per idea (issue #33): the methods' PGD iteration count is `steps`, as the attacks
call it; files written when it was `k` are read as `steps` with one warning line (an old run
resumes, an old experiment folder is reproduced into); and no budget has a default that suits
one dataset only (EvalSettings / TransferSettings need eps)."""

from __future__ import annotations

import json

import pytest

from robustlab.common.errors import ConfigError
from robustlab.evaluation.settings import EvalSettings, EvalSettingsError
from robustlab.evaluation.transfer_matrix import TransferSettings
from robustlab.registry import METHODS
from robustlab.runs.folder import RunFolder
from robustlab.training import TrainConfig, create_method, load_config_file, train
from robustlab.training.recipes import configure

SYN = {"n_train": 120, "n_test": 30, "image_size": 12}


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "method_options.k is now" in line]


def test_methods_call_their_pgd_iterations_steps_like_the_attacks():
    for name in METHODS.list():
        assert "k" not in METHODS.get(name).OPTIONS, name
    for name in ("pgd-at", "trades", "mart", "hybrid", "hybrid-pgd", "mix"):
        assert "steps" in METHODS.get(name).OPTIONS, name
    assert create_method("pgd-at", steps=3).steps == 3
    assert METHODS.get("hybrid-pgd").OPTIONS["steps"].default == 2


def test_k_given_from_python_is_named_with_its_new_name():
    with pytest.raises(ConfigError, match=r"^method_options.k: renamed steps .*"
                                          r"expected method_options.steps=2$"):
        create_method("pgd-at", k=2)


def test_old_config_file_with_k_reads_as_steps_with_one_warning(tmp_path, capsys):
    path = tmp_path / "old.toml"
    path.write_text('[train]\ndataset = "synthetic"\nmethod = "pgd-at"\neps = 0.1\n'
                    '[train.method_options]\nk = 3\nrandom_start = false\n')
    cfg = configure(load_config_file(path), "auto", source=str(path))
    assert cfg.method_options == {"steps": 3, "random_start": False}
    lines = _warnings(capsys.readouterr().err)
    assert lines == [f"warning: {path}: method_options.k is now method_options.steps (the "
                     "attacks' name for it); read as steps=3"]
    # the recipe's own steps do not override the file's
    mnist = configure({"dataset": "mnist", "method": "pgd-at", "eps": 0.3,
                       "method_options": {"k": 2}}, "auto", source="x")
    assert mnist.recipe == "mnist-linf" and mnist.method_options == {"steps": 2}


def test_both_names_at_once_are_refused():
    with pytest.raises(ConfigError, match=r"^f.toml: method_options: both k \(the old name\) "
                                          r"and steps given; expected steps only"):
        TrainConfig.from_dict({"method": "pgd-at", "method_options": {"k": 2, "steps": 3}},
                              source="f.toml")


class _StopAfterFirstEpoch(Exception):
    pass


class _Stop:
    def on_epoch(self, row):
        raise _StopAfterFirstEpoch


def _old_style_writer(monkeypatch):
    """config.json as robustlab wrote it before the rename (method_options.k)."""
    original = RunFolder.write_config

    def write_config(self, config, model_kwargs=None):
        options = {("k" if key == "steps" else key): v
                   for key, v in config["method_options"].items()}
        original(self, {**config, "method_options": options}, model_kwargs)

    monkeypatch.setattr(RunFolder, "write_config", write_config)
    return original


@pytest.mark.integration  # trains (a run folder records its environment)
def test_resume_of_a_run_written_with_k(tmp_path, monkeypatch, capsys):
    from robustlab.runs.load import load_run

    cfg = TrainConfig(dataset="synthetic", dataset_options=SYN, model="lenet5", method="pgd-at",
                      eps=0.1, method_options={"steps": 1}, epochs=2, batch_size=32,
                      val_size=20, lr=0.05, progress=False, recipe=None,
                      out_dir=str(tmp_path / "run"), device="cpu")
    original = _old_style_writer(monkeypatch)
    with pytest.raises(_StopAfterFirstEpoch):
        train(cfg, callbacks=[_Stop()])  # epoch 1 checkpointed, then interrupted
    monkeypatch.setattr(RunFolder, "write_config", original)
    written = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert written["method_options"] == {"k": 1}
    capsys.readouterr()
    result = train(cfg, resume=True)  # the same run, spelled with today's name
    assert result.summary["epochs_done"] == 2 and len(result.metrics) == 2
    assert len(_warnings(capsys.readouterr().err)) == 1
    # the folder is left as written (its digest binds the checkpoint); reading it upgrades
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"] == written
    assert load_run(tmp_path / "run", device="cpu").cfg.method_options == {"steps": 1}


@pytest.mark.integration  # trains (a run folder records its environment)
def test_reproduce_into_an_experiment_folder_written_with_k(tmp_path, capsys):
    from robustlab.experiments.presets import DatasetPlan, EvalPlan, MethodPlan, get_preset
    from robustlab.experiments.runner import reproduce

    preset = get_preset("smoke").replace(
        name="old-k", datasets=(DatasetPlan("synthetic", "lenet5", (("standard", 0.1),)),),
        methods=(MethodPlan("pgd-at", {"steps": 1}),), protocols=("paper",),
        protocol_budgets={}, train_size=60, val_size=20, epochs=1,
        eval=EvalPlan(attacks=("fgsm",), n=10, batch_size=10, curve_factors=(0.0, 1.0),
                      curve_n=10, audit=False, attack_options={}))
    out = tmp_path / "exp"
    reproduce(preset, out, threads=1, device="cpu", report=False)
    [config] = (out / "runs").glob("*/config.json")
    data = json.loads(config.read_text())
    data["train"]["method_options"] = {"k": 1}  # as the experiment was written before
    config.write_text(json.dumps(data))
    capsys.readouterr()
    reproduce(preset, out, threads=1, device="cpu", report=False)
    out_text = capsys.readouterr()
    assert "trained" in out_text.out and "(cached)" in out_text.out
    assert len(_warnings(out_text.err)) == 1


def test_eval_settings_need_a_budget():
    for make in (lambda: EvalSettings(), lambda: EvalSettings(attacks=("pgd",)),
                 lambda: TransferSettings(), lambda: EvalSettings.from_dict({"n": 10})):
        with pytest.raises(EvalSettingsError) as exc:
            make()
        msg = str(exc.value)
        assert msg.startswith("eps: ") and "no default suits every dataset" in msg
        assert "0.031 CIFAR-10" in msg and "\n" not in msg
    assert EvalSettings(eps=8 / 255).validate().eps == 8 / 255
    assert TransferSettings(eps=0.1).eps == 0.1


def test_evaluate_counts_images_with_images_like_certify_and_transfer():
    """The first N test images are `--images` in every command; evaluate keeps `--n`, its
    older name, for the same value."""
    from robustlab.cli import build_parser

    parser = build_parser()
    for flag in ("--images", "--n"):
        assert parser.parse_args(["evaluate", "run", flag, "7"]).n == 7
    for command in (["certify", "run"], ["transfer", "a", "b"]):
        assert parser.parse_args([*command, "--images", "7"]).images == 7
