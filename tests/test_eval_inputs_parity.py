"""Evaluation inputs the corpus (bench/bad_inputs.py) found accepted or crashing: the command
line, `robustlab.evaluate`, `load_user_model` and the attack API refuse them alike, with one
line, before any compute (or, for half-precision logits, warn as documented)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import robustlab
from robustlab.attacks import AttackError, create
from robustlab.cli import main
from robustlab.common.device import DeviceError
from robustlab.evaluation.runs import _settings
from robustlab.evaluation.settings import EvalSettings, EvalSettingsError
from robustlab.models.probe import check_model_on_data
from robustlab.models.user import load_user_model
from robustlab.training import ConfigError


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 1, 8, 8, generator=g), torch.arange(4)


def _cli_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("robustlab evaluate: error:"), lines
    return lines[0]


# ------------------------------------------------------------- a per-attack eps / norm
@pytest.mark.parametrize("key, value", [("eps", 0.5), ("norm", "l2")])
def test_settings_refuse_a_per_attack_budget(key, value):
    settings = EvalSettings(attacks=("pgd",), eps=0.1, attack_options={"pgd": {key: value}})
    with pytest.raises(EvalSettingsError, match=rf"attack_options\.pgd\.{key}: .*use --{key}"):
        settings.validate()


def test_evaluate_model_cli_refuses_attack_opt_eps(capsys, tmp_path):
    line = _cli_error(["evaluate", "--model", str(tmp_path / "none.py:make"), "--dataset",
                       "synthetic", "--eps", "0.1", "--attacks", "fgsm", "--attack-opt",
                       "fgsm.eps=0.5", "--device", "cpu"], capsys)
    assert "attack_options.fgsm.eps" in line and "--eps" in line


def test_run_settings_refuse_attack_opt_eps():
    with pytest.raises(ConfigError, match=r"attack_options\.pgd\.eps: .*--eps"):
        _settings("r", {"eps": 0.1, "norm": "linf"}, attacks=["pgd"], eps=None, norm=None, n=4,
                  batch_size=4, seed=0, extra={"attack_options": {"pgd": {"eps": 0.5}}})


def test_api_refuses_a_per_attack_eps():
    x, y = tiny_data()
    with pytest.raises(EvalSettingsError, match=r"attack_options\.fgsm\.eps"):
        robustlab.evaluate(tiny_net(), x, y, eps=0.1, attacks=["fgsm"],
                           attack_options={"fgsm": {"eps": 0.5}})


# ----------------------------------------------------------- empty --norm / --attacks
def test_run_settings_refuse_an_empty_norm_and_keep_the_runs_norm():
    common = dict(attacks=["fgsm"], eps=None, n=4, batch_size=4, seed=0, extra={})
    cfg = {"eps": 0.5, "norm": "l2"}
    assert _settings("r", cfg, norm=None, **common).norm == "l2"
    with pytest.raises(ConfigError, match="norm: expected one of"):
        _settings("r", cfg, norm="", **common)


@pytest.mark.parametrize("text", [",", " , "])
def test_cli_refuses_attacks_naming_none(capsys, text):
    line = _cli_error(["evaluate", "no-such-run", "--attacks", text], capsys)
    assert "--attacks: expected comma-separated attack names" in line


# --------------------------------------------------------------- robustlab.evaluate
@pytest.mark.parametrize("kwargs, match", [
    ({"norm": "l2", "eps": 1000}, r"eps: an L2 budget of 1000(\.0)? exceeds 8\.0"),
    ({"n": 100}, r"n: 100 exceeds the 4 samples of x"),
    ({"attack_options": [1]}, r"attack_options: expected a dict .*got a list"),
    ({"attack_options": {"fgsm": 3}}, r"attack_options\.fgsm: expected a dict .*got a int"),
])
def test_api_makes_the_clis_checks(kwargs, match):
    x, y = tiny_data()
    with pytest.raises(EvalSettingsError, match=match):
        robustlab.evaluate(tiny_net(), x, y, **{"eps": 0.1, "attacks": ["fgsm"], **kwargs})


def test_api_accepts_n_equal_to_the_samples():
    x, y = tiny_data()
    result = robustlab.evaluate(tiny_net(), x, y, eps=0.1, attacks=["fgsm"], n=4)
    assert result.n == 4


# ------------------------------------------------------------------ load_user_model
def test_load_user_model_refuses_an_unknown_device(tmp_path):
    net = tmp_path / "net.py"
    net.write_text("from torch import nn\n\ndef make():\n    return nn.Linear(2, 2)\n")
    with pytest.raises(DeviceError, match=r"device: expected .*'cuda\[:N\]', got 'tpu'"):
        load_user_model(f"{net}:make", device="tpu")
    assert isinstance(load_user_model(f"{net}:make", device="cpu"), nn.Module)


# ---------------------------------------------------------------- half-precision logits
class HalfOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = tiny_net()

    def forward(self, x):
        return self.f(x).half()


def test_probe_warns_on_half_precision_logits():
    x, _ = tiny_data()
    with pytest.warns(RuntimeWarning, match="logits are torch.float16"):
        assert check_model_on_data(HalfOut(), x, num_classes=10) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_model_on_data(tiny_net(), x, num_classes=10)


# ------------------------------------------------------------- attack API: NHWC input
def test_attack_names_x_shape_when_the_model_fails_on_it():
    x, y = tiny_data()
    nhwc = x.permute(0, 2, 3, 1).expand(4, 8, 8, 3).contiguous()
    with pytest.raises(AttackError, match=r"shape \[4, 8, 8, 3\].*RuntimeError: mat1 and mat2"):
        create("fgsm", eps=0.1)(tiny_net(), nhwc, y)


def test_attack_error_from_the_model_passes_through_unwrapped():
    class Raises(nn.Module):
        def forward(self, x):
            raise AttackError("mine")

    x, y = tiny_data()
    with pytest.raises(AttackError, match="^mine$"):
        create("fgsm", eps=0.1)(Raises(), x, y)
