"""`robustlab.train` on data passed from Python (issue #32 items 6 and 12, issue #37 item 1):
resume checks the data's fingerprint and, on a finished run, returns the trained model;
channels-last and non-finite images; the recipe applied is the one `robustlab train` applies
for the same inputs, and it is said on stderr."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import robustlab
from robustlab.cli import main
from robustlab.common.errors import ConfigError
from robustlab.data import DataError, load_dataset
from robustlab.data.in_memory import as_split, fingerprint, splits_from_data
from robustlab.runs.config import TrainConfig
from robustlab.runs.folder import RunFolderError
from robustlab.training import RunResult
from robustlab.training.recipes import RECIPES

N_TRAIN, N_TEST = 600, 100


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(4 * 14 * 14, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture(scope="module")
def mnist(mnist_root):
    return load_dataset("mnist", mnist_root)


@pytest.fixture(scope="module")
def subset(mnist):
    return ((mnist.train.x[:N_TRAIN], mnist.train.y[:N_TRAIN]),
            (mnist.test.x[:N_TEST], mnist.test.y[:N_TEST]))


FIELDS = dict(epochs=2, lr=0.05, batch_size=100, threads=1, progress=False, seed=0,
              recipe="none")


class _Kill:
    """Stops the run after its first epoch's checkpoint, as a kill would."""

    def on_epoch(self, row):
        raise KeyboardInterrupt


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ resume: the same data
def test_resume_on_different_data_is_refused_in_one_line(tmp_path, subset, mnist):
    train, test = subset
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        robustlab.train(TinyNet(), train, test=test, out_dir=out, callbacks=[_Kill()], **FIELDS)
    recorded = json.loads((out / "config.json").read_text())["train"]["data_fingerprint"]
    assert recorded == fingerprint(splits_from_data(train, None, test, split_seed=0))
    assert recorded.startswith("sha256:") and len(recorded) == 7 + 64
    other = (mnist.train.x[N_TRAIN:2 * N_TRAIN], mnist.train.y[N_TRAIN:2 * N_TRAIN])
    flipped = (train[0].flip(-1), train[1])  # same shape, same labels, other pixels
    for data, held_out in ((other, test), (flipped, test), (train, (test[0][:50], test[1][:50]))):
        with pytest.raises(RunFolderError, match="trained on other data") as err:
            robustlab.train(TinyNet(), data, test=held_out, out_dir=out, resume=True, **FIELDS)
        assert "\n" not in str(err.value) and "data_fingerprint" in str(err.value)
    # the same images from numpy are the same data: the resume goes on
    numpy_train = (train[0].numpy(), train[1].numpy())
    resumed = robustlab.train(TinyNet(), numpy_train, test=test, out_dir=out, resume=True,
                              **FIELDS)
    assert resumed.summary["epochs_done"] == 2


def test_a_run_recorded_before_fingerprints_resumes_with_a_warning(tmp_path, subset, capsys):
    train, test = subset
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        robustlab.train(TinyNet(), train, test=test, out_dir=out, callbacks=[_Kill()], **FIELDS)
    config = json.loads((out / "config.json").read_text())
    del config["train"]["data_fingerprint"]  # as written before the field existed
    (out / "config.json").write_text(json.dumps(config))
    from robustlab.runs.checkpoint import RUN_CONFIG_KEY, load_state, save_state

    state = load_state(out / "checkpoint.safetensors")  # and its checkpoint, before it was
    del state[RUN_CONFIG_KEY]  # bound to its run's config
    save_state(out / "checkpoint.safetensors", state)
    resumed = robustlab.train(TinyNet(), train, test=test, out_dir=out, resume=True, **FIELDS)
    assert resumed.summary["epochs_done"] == 2
    assert "recorded no fingerprint of its data" in capsys.readouterr().err


def test_fingerprint_is_for_data_of_your_own_only(tmp_path, subset):
    with pytest.raises(ConfigError, match="data_fingerprint: recorded only for data passed"):
        TrainConfig(dataset="mnist", data_fingerprint="sha256:" + "0" * 64).validate()
    with pytest.raises(ConfigError, match="data_fingerprint: computed by robustlab.train"):
        robustlab.train(TinyNet(), subset[0], data_fingerprint="x", out_dir=tmp_path / "r")


def test_resume_of_a_finished_run_returns_its_trained_model(tmp_path, subset):
    train, test = subset
    out = tmp_path / "run"
    torch.manual_seed(0)
    first = robustlab.train(TinyNet(), train, test=test, out_dir=out, **{**FIELDS, "epochs": 1})
    fresh = TinyNet()
    fresh.train()
    again = robustlab.train(fresh, train, test=test, out_dir=out, resume=True,
                            **{**FIELDS, "epochs": 1})
    assert again.model is fresh and not fresh.training
    assert _same_weights(fresh, first.model)
    assert again.summary == first.summary
    with torch.no_grad():
        assert torch.equal(fresh(test[0]), first.model(test[0]))


# ------------------------------------------------------------------------- the images
def test_channels_last_images_are_transposed_with_a_note(subset, capsys):
    (x, y), _ = subset
    split = as_split((x.permute(0, 2, 3, 1).numpy(), y.numpy()), "train")  # [N, 28, 28, 1]
    assert split.x.shape == x.shape and torch.equal(split.x, x)
    err = capsys.readouterr().err
    assert "channels-last" in err and "[600, 28, 28, 1]" in err and "[600, 1, 28, 28]" in err
    rgb = torch.rand(5, 32, 32, 3)
    assert torch.equal(as_split((rgb, torch.zeros(5, dtype=torch.long)), "train").x,
                       rgb.permute(0, 3, 1, 2))
    ambiguous = torch.rand(5, 3, 8, 3)  # NCHW as documented: kept as given
    assert as_split((ambiguous, torch.zeros(5, dtype=torch.long)), "t").x.shape == (5, 3, 8, 3)


def test_non_finite_pixels_are_refused_with_their_count(subset):
    (x, y), _ = subset
    bad = x[:10].clone()
    bad[0, 0, 0, :2] = float("nan")
    bad[3, 0, 5, 5] = float("inf")
    with pytest.raises(DataError, match=r"train x: 3 non-finite pixel value\(s\)"):
        as_split((bad, y[:10]), "train")


# ---------------------------------------------------------------- the recipe it applies
def _api_config(monkeypatch, model, data, **kw) -> TrainConfig:
    seen = {}

    def fake_train(cfg, **_):
        seen["cfg"] = cfg
        return RunResult(cfg.out_dir, {}, [], model)

    monkeypatch.setattr("robustlab.training.api.train_config", fake_train)
    robustlab.train(model, data, **kw)
    return seen["cfg"]


def _cli_config(monkeypatch, argv) -> TrainConfig:
    seen = {}

    def fake_train(cfg, **_):
        seen["cfg"] = cfg
        return RunResult(cfg.out_dir, {"test_acc": None, "health": "ok"}, [])

    monkeypatch.setattr("robustlab.training.train", fake_train)
    assert main(argv) == 0
    return seen["cfg"]


_OWN = ("dataset", "model", "out_dir", "data_dir", "data_fingerprint", "progress", "threads")


@pytest.mark.parametrize("method, eps", [("pgd-at", 0.3), ("trades", 0.1), ("standard", None)])
def test_python_applies_and_says_the_recipe_the_cli_applies(monkeypatch, capsys, tmp_path,
                                                            mnist, mnist_root, method, eps):
    data = (mnist.train.x[:256], mnist.train.y[:256])
    budget = {} if eps is None else {"eps": eps}
    api = _api_config(monkeypatch, TinyNet(), data, method=method, progress=False,
                      out_dir=str(tmp_path / "api"), **budget)
    api_err = capsys.readouterr().err
    cli = _cli_config(monkeypatch, ["train", "--dataset", "mnist", "--method", method,
                                    "--data-dir", str(mnist_root), "--out", str(tmp_path / "c"),
                                    *(["--eps", str(eps)] if eps is not None else [])])
    cli_out = capsys.readouterr().out
    assert api.recipe == cli.recipe == "mnist-linf"
    a, c = api.to_dict(), cli.to_dict()
    assert {k: v for k, v in a.items() if k not in _OWN} == \
        {k: v for k, v in c.items() if k not in _OWN}
    said = RECIPES["mnist-linf"].describe(api)
    assert said == RECIPES["mnist-linf"].describe(cli)
    assert f"recipe: {said}" in cli_out
    line = [s for s in api_err.splitlines() if s.startswith("robustlab.train: recipe:")]
    assert len(line) == 1 and said in line[0] and "auto: chosen for 1x28x28 images" in line[0]


def test_explicit_keywords_win_and_other_images_get_no_recipe(monkeypatch, capsys, tmp_path):
    data = (torch.rand(64, 1, 28, 28), torch.arange(64) % 10)
    cfg = _api_config(monkeypatch, TinyNet(), data, method="pgd-at", eps=0.3, lr=0.01,
                      epochs=2, progress=False, out_dir=str(tmp_path / "a"))
    assert cfg.recipe == "mnist-linf" and cfg.lr == 0.01 and cfg.epochs == 2
    assert cfg.eps_warmup == pytest.approx(2 / 3, abs=1e-5)  # the share of the run asked for
    capsys.readouterr()
    rgb = (torch.rand(64, 3, 32, 32), torch.arange(64) % 10)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    cfg = _api_config(monkeypatch, net, rgb, method="pgd-at", eps=8 / 255, progress=False,
                      out_dir=str(tmp_path / "b"))
    assert cfg.recipe is None and cfg.lr == TrainConfig().lr
    assert "recipe: none applied (no recipe is written for 3x32x32 images" in \
        capsys.readouterr().err
    cfg = _api_config(monkeypatch, TinyNet(), data, method="pgd-at", eps=0.3, recipe="none",
                      progress=False, out_dir=str(tmp_path / "c"))
    assert cfg.recipe is None and "recipe='none'" in capsys.readouterr().err


# ------------------------------------------------------- the README's example, as written
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow  # 6 epochs of PGD-AT on 49,500 MNIST images: ~10 min on one thread
def test_readme_example_learns_as_written(tmp_path, monkeypatch, mnist_root):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTLAB_DATA", str(mnist_root))
    torch.set_num_threads(1)  # restored by conftest
    torch.manual_seed(0)  # the block leaves the model's initialisation to torch's RNG
    blocks = re.findall(r"```python readme-train\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102
    run, result = namespace["run"], namespace["result"]
    assert run.summary["recipe"] == "mnist-linf" and run.summary["health"] == "ok"
    assert result.n == 1000 and result.clean_acc >= 0.97 and result.robust_acc["pgd"] >= 0.85
