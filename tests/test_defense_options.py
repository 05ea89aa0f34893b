"""Defenses declare their options once (issue #33, item 1) and open no run folder (item 6): the
autoencoder defense receives its model; a run folder named by a training config's
`defense_options` is opened by the runs layer (`runs/saved.py`), from the recorded
`model_kwargs`, with the weights' digest checked. Fast: tiny runs on the synthetic dataset."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.common.options import Option
from robustlab.data import DatasetInfo
from robustlab.defenses import DefenseError, create_defense, list_defenses
from robustlab.defenses.autoencoder import AutoencoderDefense
from robustlab.registry import DEFENSES
from robustlab.runs.build import build_model
from robustlab.runs.config import TrainConfig
from robustlab.runs.load import load_model
from robustlab.training import train

INFO = DatasetInfo("synthetic", 10, 1, (28, 28), (0.5,), (0.5,), tuple(map(str, range(10))))


def _run(tmp_path, name: str, **fields):
    cfg = TrainConfig(dataset="synthetic", dataset_options={"n_train": 64, "n_test": 16},
                      epochs=1, batch_size=32, progress=False, threads=1,
                      out_dir=str(tmp_path / name), **fields)
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("defense-runs")
    return {"dae": _run(tmp, "dae", model="denoising-autoencoder", method="autoencoder",
                        optimizer="adam", lr=2e-3),
            "clf": _run(tmp, "clf", model="lenet5", method="standard")}


def test_every_defense_declares_its_options():
    for name in list_defenses():
        cls = DEFENSES.get(name)
        assert cls.OPTIONS and all(isinstance(o, Option) and o.doc for o in cls.OPTIONS.values())


@pytest.mark.parametrize("name, options, message", [
    ("median", {"radius": 2}, "unknown option(s) radius for defense 'median'; known: size"),
    ("bit-depth", {"bits": 1.5}, "bits: expected an integer in [1, 16], got 1.5"),
    ("gaussian-noise", {}, "defense 'gaussian-noise' needs option(s) sigma; it accepts: "
                           "sigma, clip"),
    ("gaussian-noise", {"sigma": True}, "sigma: expected a finite number > 0, got True"),
    ("autoencoder", {"freeze": "yes"}, "freeze: expected true or false, got 'yes'"),
])
def test_options_resolved_from_the_declaration(name, options, message):
    with pytest.raises(DefenseError) as exc:
        create_defense(name, model=nn.Identity(), **options)
    assert str(exc.value) == message


def test_a_config_error_names_the_defense_and_the_option():
    for options, words in [({"radius": 2}, "median unknown option(s) radius"),
                           ({"size": 4}, "median size: expected an odd window size")]:
        cfg = TrainConfig(dataset="synthetic", defense="median", defense_options=options)
        with pytest.raises(ConfigError, match=r"^defense_options: ") as exc:
            build_model(cfg, INFO, torch.device("cpu"))
        assert words in str(exc.value)


def test_the_autoencoder_defense_receives_its_model_and_opens_no_folder(runs):
    ae = load_model(runs["dae"], device="cpu")
    defense = create_defense("autoencoder", model=nn.Flatten(), autoencoder=ae)
    assert defense.autoencoder is ae and not any(p.requires_grad for p in ae.parameters())
    with pytest.raises(DefenseError, match="autoencoder_run: a defense opens no run folder"):
        create_defense("autoencoder", model=nn.Flatten(), autoencoder_run=str(runs["dae"]))


def test_the_runs_layer_opens_the_folder_a_config_names(runs):
    cfg = TrainConfig(dataset="synthetic", model="lenet5", defense="autoencoder",
                      defense_options={"autoencoder_run": str(runs["dae"])})
    model = build_model(cfg, INFO, torch.device("cpu"))
    assert isinstance(model, AutoencoderDefense)
    reference = load_model(runs["dae"], device="cpu").state_dict()
    for key, value in model.autoencoder.state_dict().items():
        assert torch.equal(value, reference[key])
    assert "autoencoder_run=" in repr(model)


@pytest.mark.parametrize("options, words", [
    ({"autoencoder_run": "clf"}, "autoencoder_run: {clf} trained model 'lenet5', expected "
                                 "'denoising-autoencoder' (train one with"),
    ({"autoencoder_run": "/nonexistent/run"}, "autoencoder_run: run folder /nonexistent/run "
                                              "does not exist"),
    ({"autoencoder": "x"}, "autoencoder: not an option of defense 'autoencoder'"),
    ({"autoencoder_run": 3}, "autoencoder_run: expected a string, got 3"),
])
def test_a_bad_run_option_is_one_config_error(runs, options, words):
    if options.get("autoencoder_run") == "clf":
        options = {"autoencoder_run": str(runs["clf"])}
    cfg = TrainConfig(dataset="synthetic", defense="autoencoder", defense_options=options)
    with pytest.raises(ConfigError) as exc:
        build_model(cfg, INFO, torch.device("cpu"))
    assert str(exc.value).startswith("defense_options: autoencoder ")
    assert words.format(clf=runs["clf"]) in str(exc.value)
