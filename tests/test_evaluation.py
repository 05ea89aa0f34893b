"""Evaluation: metrics, settings validation, per-sample consistency, eval JSON, `evaluate`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustlab.evaluation import EvalSettings, EvalSettingsError, evaluate_model
from robustlab.evaluation import metrics as M
from robustlab.evaluation.schema import SCHEMA_VERSION, check_eval_dict
from robustlab.evaluation.table import format_result_table

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_ece_hand_computed():
    conf = torch.tensor([0.95, 0.95, 0.55, 0.55])
    correct = torch.tensor([True, False, True, True])
    # bin 0.9-1.0: acc 0.5 vs conf 0.95 -> 0.45 * 2/4; bin 0.5-0.6: acc 1 vs 0.55 -> 0.45 * 2/4
    assert M.expected_calibration_error(conf, correct, 10) == pytest.approx(0.45)
    assert M.expected_calibration_error(torch.empty(0), torch.empty(0, dtype=torch.bool)) is None


def test_median_mixed_bits_and_budget():
    assert M.median_or_none(torch.tensor([1.0, 3.0, 2.0, 10.0])) == pytest.approx(2.5)
    assert M.median_or_none(torch.empty(0)) is None
    clean = torch.tensor([True, True, False, True])
    adv = torch.tensor([False, False, False, True])
    # even indices clean (True, False), odd adversarial (False, True)
    assert M.mixed_accuracy(clean, adv) == pytest.approx(0.5)
    mask = torch.tensor([True, False, True])
    assert M.bits(mask) == "101" and torch.equal(M.from_bits("101"), mask)
    delta = torch.zeros(2, 1, 2, 2)
    delta[0, 0, 0, 0] = 0.3
    delta[1, 0, 0, 0] = 0.31
    assert M.within_budget(delta, 0.3, "linf").tolist() == [True, False]


@pytest.mark.parametrize("field,value,match", [
    ("attacks", ("nope",), "unknown attack 'nope'"),
    ("attacks", (), "at least one attack"),
    ("eps", -1.0, "eps: expected a finite number >= 0"),
    ("norm", "l3", "norm: expected one of linf, l2"),
    ("norm", "l1", "attacks: fgsm does not attack at norm l1"),  # defaults: fgsm, pgd
    ("n", 0, "n: expected an integer >= 1"),
    ("mixed_attack", "cw-l2", "mixed_attack"),
])
def test_settings_validation_names_the_field(field, value, match):
    with pytest.raises(EvalSettingsError, match=match):
        EvalSettings(**{"eps": 0.3, field: value}).validate()


def test_settings_key_ignores_label_only():
    a = EvalSettings(attacks=("fgsm",), eps=0.1)
    assert a.key() == EvalSettings(attacks=("fgsm",), eps=0.1, label="x").key()
    assert a.key() != EvalSettings(attacks=("fgsm",), eps=0.2).key()
    assert EvalSettings.from_dict(a.to_dict()) == a


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def toy_result():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = Toy().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:4] = (y[:4] + 1) % 4  # four samples misclassified on clean inputs
    settings = EvalSettings(attacks=("fgsm", "pgd"), eps=0.05, n=20, batch_size=7,
                            curve_factors=(0.0, 1.0, 4.0), curve_n=20, audit_n=20,
                            audit_square_queries=20)
    yield evaluate_model(model, x, y, settings), y
    torch.set_num_threads(before)


def test_evaluate_model_is_consistent_per_sample(toy_result):
    r, y = toy_result
    assert r["schema"] == SCHEMA_VERSION and r["n"] == 20
    check_eval_dict(json.loads(json.dumps(r)), "roundtrip")  # JSON-serialisable, all fields
    bits = r["per_sample"]["correct"]
    clean = M.from_bits(bits["clean"])
    assert r["clean"]["acc"] == pytest.approx(clean.double().mean().item())
    assert clean[:4].sum() == 0  # the mislabelled ones
    worst = torch.ones(20, dtype=torch.bool)
    for name in ("fgsm", "pgd"):
        robust = M.from_bits(bits[name])
        assert not bool((robust & ~clean).any())  # robust implies clean-correct
        assert r["attacks"][name]["acc"] == pytest.approx(robust.double().mean().item())
        acc = robust.double().mean().item()
        assert r["attacks"][name]["gap"] == pytest.approx(r["clean"]["acc"] - acc)
        worst &= robust
        broken = (clean & ~robust).double().sum().item()
        assert r["attacks"][name]["success_rate"] == pytest.approx(broken / clean.sum().item())
        linf = r["attacks"][name]["perturbation"]["linf_median"]
        assert linf is None or linf <= 0.05 + 1e-6
    assert bits["worst_case"] == M.bits(worst)
    assert r["worst_case"]["acc"] == pytest.approx(worst.double().mean().item())
    assert r["per_sample"]["labels"] == y[:20].tolist()
    curve = r["curve"]["points"]
    assert [p["factor"] for p in curve] == [0.0, 1.0, 4.0]
    assert curve[0]["acc"] == pytest.approx(r["clean"]["acc"])
    assert curve[1]["acc"] == pytest.approx(r["attacks"]["pgd"]["acc"])


def test_audit_and_table(toy_result):
    r, _ = toy_result
    names = [c["name"] for c in r["audit"]["checks"]]
    assert names == ["finite_logits", "collapse", "large_eps", "curve_monotone",
                     "iterative_vs_single", "more_steps", "black_box", "gradient_free",
                     "gradients", "randomness", "bpda"]
    assert all(c["status"] in ("pass", "flag", "skipped") and c["reason"]
               for c in r["audit"]["checks"])
    by = {c["name"]: c for c in r["audit"]["checks"]}
    assert by["gradients"]["status"] == "pass" and by["bpda"]["status"] == "pass"
    assert by["more_steps"]["values"]["options"]["steps"] == 50  # 5 x PGD's default 10
    table = format_result_table(r, title="toy")
    for word in ("clean", "fgsm", "pgd", "worst case", "mixed test set", "audit PASS"):
        assert word in table


def test_masked_toy_model_is_flagged():
    """A quantising (zero-gradient) front end evaluated without BPDA must be flagged."""
    class Masked(Toy):
        nondifferentiable = True

        def forward(self, x):
            return self.net(torch.round(x))

        def bpda_forward(self, x):
            return self.net(x + (torch.round(x) - x).detach())

    model = Masked().eval()
    x = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model(x).argmax(1)
    s = EvalSettings(attacks=("fgsm", "pgd"), eps=0.3, n=30, curve_factors=(0.0, 1.0),
                     audit_n=30, audit_square_queries=30, adaptive=False)
    r = evaluate_model(model, x, y, s)
    assert r["audit"]["flagged"]
    assert {"gradients", "bpda", "large_eps"} <= set(r["audit"]["flags"])
    assert "FLAGGED" in format_result_table(r)
    adaptive = evaluate_model(model, x, y, EvalSettings(**{**s.to_dict(), "adaptive": True,
                                                          "attacks": ("fgsm", "pgd"),
                                                          "curve_factors": (0.0, 1.0)}))
    by = {c["name"]: c["status"] for c in adaptive["audit"]["checks"]}
    assert by["bpda"] == "pass" and by["gradients"] == "pass"
    assert adaptive["attacks"]["pgd"]["acc"] <= r["attacks"]["pgd"]["acc"]


def test_evaluate_runs_writes_json_and_refuses_overwrite(tmp_path, capsys):
    from robustlab.evaluation.runs import evaluate_runs
    from robustlab.training import ConfigError, RunFolderError, TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(dataset="synthetic", epochs=1, batch_size=50, progress=False,
                      out_dir=str(run), threads=1, lr=0.05))
    kw = dict(attacks=["fgsm", "pgd"], eps=0.1, norm=None, n=10, batch_size=10, seed=0,
              device="cpu", data_dir=None, out=None, overwrite=False, non_adaptive=False)
    (result,) = evaluate_runs([str(run)], **kw)
    out = capsys.readouterr().out
    assert "worst case" in out and str(run / "eval.json") in out
    on_disk = json.loads((run / "eval.json").read_text())
    assert on_disk["attacks"]["pgd"]["acc"] == result["attacks"]["pgd"]["acc"]
    assert on_disk["run"]["method"] == "standard" and on_disk["training"]["epochs"] == 1
    with pytest.raises(RunFolderError, match="eval.json already exists"):
        evaluate_runs([str(run)], **kw)
    with pytest.raises(ConfigError, match="unknown attack 'bogus'"):
        evaluate_runs([str(run)], **{**kw, "attacks": ["bogus"], "overwrite": True})
    with pytest.raises(RunFolderError, match="trained without eps"):
        evaluate_runs([str(run)], **{**kw, "eps": None, "overwrite": True})


def test_evaluate_runs_save_adv_one_folder_per_run(tmp_path, capsys):
    from robustlab.common.errors import ConfigError
    from robustlab.evaluation.runs import evaluate_runs
    from robustlab.training import TrainConfig, train

    runs = []
    for name in ("a", "b"):
        train(TrainConfig(dataset="synthetic", epochs=1, batch_size=50, progress=False,
                          out_dir=str(tmp_path / name), threads=1, lr=0.05, seed=len(runs)))
        runs.append(str(tmp_path / name))
    kw = dict(attacks=["fgsm"], eps=0.1, norm=None, n=10, batch_size=10, seed=0, device="cpu",
              data_dir=None, out=None, overwrite=False, non_adaptive=False,
              save_adv=str(tmp_path / "adv"), audit=False, curve_attack=None)
    evaluate_runs(runs, **kw)
    assert sorted(p.relative_to(tmp_path / "adv").as_posix()
                  for p in (tmp_path / "adv").rglob("*.safetensors")) == \
        ["a/fgsm.safetensors", "b/fgsm.safetensors"]
    # --overwrite replaces the examples it wrote, never a file of the user's of that name
    evaluate_runs(runs, **{**kw, "overwrite": True})
    mine = tmp_path / "adv" / "b" / "fgsm.safetensors"
    mine.write_bytes(b"my own file")
    with pytest.raises(ConfigError, match="not a file robustlab wrote"):
        evaluate_runs(runs, **{**kw, "overwrite": True})
    assert mine.read_bytes() == b"my own file"


def test_linf_curve_stops_at_the_pixel_range():
    """At eps 0.8 the curve's 1.5x and 2x points would exceed linf 1 (any image is reachable
    at 1): they are left out instead of failing the evaluation."""
    import robustlab

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(12, 1, 4, 4), torch.randint(0, 3, (12,))
    result = robustlab.evaluate(model, x, y, eps=0.8, attacks=["fgsm"], curve=True)
    eps_points = [p["eps"] for p in result.details["curve"]["points"]]
    assert eps_points and max(eps_points) <= 1.0 and 0.8 in eps_points
