"""The threat model is one idea in evaluate, the presets and the report (issue #35, item 4).

- `robustlab evaluate --norm l1|l0` (and `robustlab.evaluate(..., norm=...)`) runs with no
  extra flag: the per-norm default attacks, the curve and the audit off there with a line
  saying so (stderr, the printed table, the eval file); asked for, they are refused in one line.
- a preset evaluates its runs at several threat models (`DatasetPlan.threat_models`).
- the report has one Table 1 section per threat model, each with its own attack columns and
  a heading naming it ("Linf, eps 0.3", "L1, eps 10", "L0, 24 pixels"); Linf alone reads as
  before.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustlab.cli import main
from robustlab.common.vocabulary import NORM_DEFAULT_ATTACKS

LINEAR = ("import torch\nfrom torch import nn\n\ndef make():\n    torch.manual_seed(0)\n"
          "    lin = nn.Linear(784, 10)\n    with torch.no_grad():\n"
          "        lin.weight.mul_(0.5)\n        lin.bias.zero_()\n        lin.bias[1] = 0.2\n"
          "    return nn.Sequential(nn.Flatten(), lin)\n")  # weakly predicts 1: breakable
CHEAP = {"l1": ["apgd-ce.steps=5", "autoattack.steps=5", "autoattack.n_target_classes=2",
                "autoattack.n_queries=20"],
         "l0": ["sparse-rs.n_queries=20", "sparse-pgd.steps=5"]}
EPS = {"l1": "10", "l0": "3"}


def _evaluate(tmp_path, mnist_root, norm: str, *extra: str) -> int:
    (tmp_path / "m.py").write_text(LINEAR)
    opts = [a for o in CHEAP[norm] for a in ("--attack-opt", o)]
    return main(["evaluate", "--model", f"{tmp_path / 'm.py'}:make", "--dataset", "mnist",
                 "--data-dir", str(mnist_root), "--images", "8", "--norm", norm, "--eps",
                 EPS[norm], "--out", str(tmp_path / "e.json"), "--device", "cpu",
                 "--no-progress", *opts, *extra])


# ------------------------------------------------------------------------------ evaluate
@pytest.mark.parametrize("norm", ["l1", "l0"])
def test_evaluate_at_l1_and_l0_runs_with_defaults_and_says_what_is_off(
        tmp_path, mnist_root, capsys, one_thread, norm):
    """No --attacks, no --no-curve / --no-audit: the norm's default attacks run, and the
    curve and the audit are off with one line each on stderr, in the table and the file."""
    assert _evaluate(tmp_path, mnist_root, norm) == 0
    out = capsys.readouterr()
    curve = f"curve: off at {norm} (the eps curve uses PGD, linf/l2 only)"
    audit = (f"audit: off at {norm} (the gradient-masking audit runs PGD and Square, "
             "linf/l2 only)")
    assert out.err.splitlines().count(curve) == 1 and out.err.splitlines().count(audit) == 1
    assert f"  {curve}" in out.out.splitlines() and f"  {audit}" in out.out.splitlines()
    data = json.loads((tmp_path / "e.json").read_text())
    assert tuple(data["settings"]["attacks"]) == NORM_DEFAULT_ATTACKS[norm]
    assert list(data["attacks"]) == sorted(NORM_DEFAULT_ATTACKS[norm])
    assert data["settings"]["curve_attack"] is None and data["settings"]["audit"] is False
    assert data["curve"] == {"attack": None, "norm": norm, "points": [], "off": curve}
    assert data["audit"]["skipped"] and data["audit"]["off"] == audit


def test_evaluate_a_run_folder_at_l0_any_case_with_defaults(mnist_run_copy, mnist_root,
                                                            capsys, one_thread):
    """A run folder (linf-trained) evaluated at `--norm L0`: the l0 defaults, the two lines
    once each, before the table."""
    opts = [a for o in CHEAP["l0"] for a in ("--attack-opt", o)]
    assert main(["evaluate", str(mnist_run_copy), "--norm", "L0", "--eps", "3", "--images",
                 "8", "--data-dir", str(mnist_root), "--device", "cpu", "--no-progress",
                 *opts]) == 0
    err = capsys.readouterr().err.splitlines()
    assert [ln for ln in err if " off at " in ln] == [
        "curve: off at l0 (the eps curve uses PGD, linf/l2 only)",
        "audit: off at l0 (the gradient-masking audit runs PGD and Square, linf/l2 only)"]
    data = json.loads((mnist_run_copy / "eval.json").read_text())
    assert data["settings"]["norm"] == "l0" and data["run"]["norm"] == "linf"
    assert tuple(data["settings"]["attacks"]) == NORM_DEFAULT_ATTACKS["l0"]
    assert data["curve"]["off"] and data["audit"]["off"]


@pytest.mark.parametrize("flag,field", [("--curve", "curve_attack"), ("--audit", "audit")])
def test_asking_for_the_curve_or_audit_at_l0_is_refused_in_one_line(
        tmp_path, mnist_root, capsys, flag, field):
    assert _evaluate(tmp_path, mnist_root, "l0", flag) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"robustlab evaluate: error: {field}: pgd does not attack at "
                             "norm l0 (it supports linf, l2); drop " + flag)
    assert not (tmp_path / "e.json").exists()


def test_python_evaluate_at_l0_defaults_and_refuses_an_asked_curve(one_thread):
    import robustlab
    from robustlab.evaluation.settings import EvalSettingsError

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x, y = torch.rand(6, 3, 8, 8), torch.arange(6) % 4
    cheap = {"sparse-rs": {"n_queries": 10}, "sparse-pgd": {"steps": 3}}
    res = robustlab.evaluate(model, x, y, eps=2, norm="L0", attack_options=cheap)
    assert set(res.robust_acc) == set(NORM_DEFAULT_ATTACKS["l0"])
    assert res.details["curve"]["off"].startswith("curve: off at l0")
    for kw in ({"curve": True}, {"audit": True}):
        with pytest.raises(EvalSettingsError, match=r"does not attack at norm l0") as err:
            robustlab.evaluate(model, x, y, eps=2, norm="l0", attack_options=cheap, **kw)
        assert "\n" not in str(err.value)


def test_linf_and_l2_keep_their_curve_and_audit_and_say_nothing():
    """The defaults at linf / l2 are what they were (the curve's PGD, the audit on), with no
    line; an explicit off is still off; the eval file gains no field there."""
    from robustlab.cli import build_parser
    from robustlab.evaluation.settings import off_at, resolve_switches

    args = build_parser().parse_args(["evaluate", "RUN"])
    assert args.curve is None and args.audit is None
    for norm in ("linf", "l2", "Linf"):
        assert resolve_switches(norm, {"audit": None, "curve": None}) == (
            {"audit": True, "curve_attack": "pgd"}, [])
        assert off_at(norm) == {}
    assert resolve_switches("linf", {"audit": False, "curve": False}) == (
        {"audit": False, "curve_attack": None}, [])
    assert resolve_switches("l1", {"audit": False, "curve": False})[1] == []  # asked: silent


# ------------------------------------------------------------------------------ presets
def test_threat_models_preset_evaluates_every_run_at_three_norms(tmp_path):
    """`reproduce --preset threat-models`: linf-trained runs, each evaluated at its Linf
    budget and at L2 and L1 (`DatasetPlan.threat_models`), the curve and the audit where the
    norm has their attacks; no transfer matrix mixes the norms."""
    from robustlab.experiments.plan import describe_jobs, plan_jobs
    from robustlab.experiments.presets import get_preset
    from robustlab.experiments.studies import transfer_groups

    preset = get_preset("threat-models")
    jobs = plan_jobs(preset, tmp_path)
    assert [j.train["method"] for j in jobs] == ["standard", "pgd-at"]
    assert {j.train["norm"] for j in jobs} == {"linf"}
    for job in jobs:
        evs = {e.label: e.settings.validate() for e in job.evals}
        assert {k: (s.norm, s.eps) for k, s in evs.items()} == {
            "standard": ("linf", 0.3), "l2": ("l2", 2.0), "l1": ("l1", 10.0)}
        assert evs["l1"].attacks == NORM_DEFAULT_ATTACKS["l1"]
        assert (evs["l1"].curve_attack, evs["l1"].audit) == (None, False)
        assert (evs["l2"].curve_attack, evs["l2"].audit) == ("pgd", True)
        mid = {"steps": 50, "n_target_classes": 3, "n_queries": 500}  # the threat model's
        assert evs["l2"].attack_options == {"pgd": {"steps": 50}, "autoattack": mid}
        assert evs["l1"].attack_options == {"autoattack": mid}  # none for apgd-ce: default
        assert evs["standard"].attack_options == preset.eval.attack_options  # the plan's
        assert len({e.path for e in job.evals}) == 3
    assert len(describe_jobs(jobs, tmp_path)[0]["evals"]) == 3
    assert all("-standard.json" in p.name for p in transfer_groups(jobs, tmp_path))


def test_a_preset_at_l1_evaluates_its_runs_with_the_l1_defaults(tmp_path):
    """A dataset whose budgets are L1 (runs trained at l1) is evaluated at them with the
    norm's default attacks, the curve and the audit off; the EvalPlan's options still apply."""
    from robustlab.experiments.plan import plan_jobs
    from robustlab.experiments.presets import DatasetPlan, get_preset

    preset = get_preset("smoke")
    at_l1 = DatasetPlan("mnist", "lenet5", (("standard", 10.0),), norm="l1")
    jobs = plan_jobs(preset.replace(datasets=(at_l1,), protocols=("paper",),
                                    protocol_budgets={}), tmp_path)
    for job in jobs:
        (ev,) = job.evals
        s = ev.settings.validate()
        assert (s.norm, s.eps, s.attacks) == ("l1", 10.0, NORM_DEFAULT_ATTACKS["l1"])
        assert (s.curve_attack, s.audit) == (None, False)
        assert s.attack_options == {"autoattack": preset.eval.attack_options["autoattack"]}


def test_a_threat_model_label_taken_by_a_budget_is_refused_in_one_line(tmp_path):
    from robustlab.common.errors import ConfigError
    from robustlab.experiments.plan import plan_jobs
    from robustlab.experiments.presets import DatasetPlan, ThreatModelPlan, get_preset

    preset = get_preset("threat-models")
    clash = DatasetPlan("mnist", "lenet5", (("standard", 0.3),),
                        threat_models=(ThreatModelPlan("standard", "l1", 10.0),))
    with pytest.raises(ConfigError, match=r"^mnist threat_models: label 'standard' is taken"):
        plan_jobs(preset.replace(datasets=(clash,)), tmp_path)


# ------------------------------------------------------------------------------- report
def _eval_file(method: str, norm: str, eps: float, label: str, accs: dict[str, float],
               clean: float, worst: float) -> dict:
    """A minimal robustlab.eval/1 file of a linf-trained run evaluated at `norm` / `eps`."""
    attacks = {a: {"acc": v, "gap": clean - v, "confidence": {"mean": 0.7}}
               for a, v in sorted(accs.items())}
    on = norm in ("linf", "l2")
    off = {} if on else {"off": f"audit: off at {norm} (the gradient-masking audit runs PGD "
                                "and Square, linf/l2 only)"}
    curve_off = {} if on else {"off": f"curve: off at {norm} (the eps curve uses PGD, "
                                      "linf/l2 only)"}
    first = next(iter(accs))
    return {
        "schema": "robustlab.eval/1", "n": 100, "label": label,
        "settings": {"eps": eps, "norm": norm, "attacks": list(accs), "curve_n": 50,
                     "audit_n": 20, "attack_options": {}, "label": label},
        "clean": {"acc": clean}, "attacks": attacks,
        "worst_case": {"acc": worst, "gap": clean - worst, "attacks": list(accs)},
        "mixed": {"attack": first, "acc": (clean + accs[first]) / 2},
        "curve": {"attack": "pgd" if on else None, "norm": norm, "points": [], **curve_off},
        "audit": {"flagged": False, "flags": [], "checks": [], "skipped": not on, **off},
        "timing": {"total_s": 1.0}, "per_sample": {}, "model": {"num_classes": 10},
        "run": {"dataset": "mnist", "model": "lenet5", "method": method, "seed": 0,
                "eps": 0.3, "norm": "linf"},
        "training": {"epochs": 1, "n_train": 2000, "epoch_time_s_mean": 1.0,
                     "train_time_s": 1.0, "peak_mem_mb": 100.0},
    }


LINF = {"standard": ({"fgsm": 0.10, "pgd": 0.02, "autoattack": 0.0}, 0.99, 0.0),
        "pgd-at": ({"fgsm": 0.90, "pgd": 0.85, "autoattack": 0.80}, 0.98, 0.80)}
OTHER = {("l1", 10.0, "l1"): {"standard": ({"apgd-ce": 0.05, "autoattack": 0.03}, 0.99, 0.03),
                              "pgd-at": ({"apgd-ce": 0.30, "autoattack": 0.25}, 0.98, 0.25)},
         ("l0", 24.0, "l0"): {"standard": ({"sparse-rs": 0.20}, 0.99, 0.20),
                              "pgd-at": ({"sparse-rs": 0.40}, 0.98, 0.40)}}


def _experiment(root, threat_models: dict) -> None:
    jobs = []
    for method in ("standard", "pgd-at"):
        run = root / "runs" / f"mnist-lenet5-{method}-recipe-s0"
        (run / "eval").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"train": {"recipe": "mnist-linf"}}))
        (run / "summary.json").write_text(json.dumps({"health": "ok"}))
        evals = [("standard", _eval_file(method, "linf", 0.3, "standard", *LINF[method]))]
        evals += [(label, _eval_file(method, norm, eps, label, *per[method]))
                  for (norm, eps, label), per in threat_models.items()]
        for label, data in evals:
            (run / "eval" / f"{label}.json").write_text(json.dumps(data))
        jobs.append({"name": run.name, "run_dir": f"runs/{run.name}", "role": method,
                     "evals": [{"label": label, "path": f"runs/{run.name}/eval/{label}.json"}
                               for label, _ in evals]})
    (root / "experiment.json").write_text(json.dumps(
        {"jobs": jobs, "preset": {"name": "threat-models", "headline": "mnist"}}))


def _table_after(md: str, heading: str) -> list[list[str]]:
    lines = md.split(heading + "\n", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| "))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        if not ln.startswith("|---"):
            rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def test_report_has_a_section_per_threat_model_with_its_own_columns(tmp_path):
    from robustlab.reporting import write_report

    _experiment(tmp_path, OTHER)
    paths = write_report(tmp_path)
    md = paths["md"].read_text()
    heads = [ln for ln in md.splitlines() if ln.startswith(("## Table 1", "### "))]
    where = "mnist / lenet5, recipe protocol, budget"
    assert heads == ["## Table 1, Linf: clean and adversarial accuracy",
                     f"### Linf, eps 0.3: {where} `standard`",
                     "## Table 1, L1: clean and adversarial accuracy",
                     f"### L1, eps 10: {where} `l1`",
                     "## Table 1, L0: clean and adversarial accuracy",
                     f"### L0, 24 pixels: {where} `l0`"]
    fixed = ["Worst case (%)", "Gap (%)", "Mixed (%)"]
    tables = {h: _table_after(md, h) for h in heads if h.startswith("###")}
    linf, l1, l0 = tables.values()
    assert linf[0] == ["Method", "Seeds", "Clean (%)", "FGSM (%)", "PGD (%)",
                       "AutoAttack (%)", *fixed]
    assert l1[0] == ["Method", "Seeds", "Clean (%)", "APGD-CE (%)", "AutoAttack (%)", *fixed]
    assert l0[0] == ["Method", "Seeds", "Clean (%)", "sparse-rs (%)", *fixed]
    assert l1[2][:5] == ["pgd-at", "1", "98.0", "30.0", "25.0"]
    assert l0[1][:4] == ["standard", "1", "99.0", "20.0"]
    protocol = md.split(f"### L1, eps 10: {where} `l1`\n", 1)[1].split("\n|", 1)[0]
    assert "100 test images" in protocol and "curve" not in protocol  # no curve, no audit
    # the summary and the audit name the threat model; the audit says where it did not run
    assert "mnist / lenet5, recipe protocol, L1, eps 10: **pgd-at**" in md
    assert "**L0, 24 pixels: mnist, recipe protocol, budget `l0`**" in md
    assert ("Not run: audit: off at l1 (the gradient-masking audit runs PGD and Square, "
            "linf/l2 only).") in md
    blocks = json.loads(paths["json"].read_text())["table1"]
    assert [(b["norm"], b["eps"]) for b in blocks] == [("linf", 0.3), ("l1", 10.0),
                                                       ("l0", 24.0)]
    html = paths["html"].read_text()
    assert "L1, eps 10: mnist / lenet5" in html


def test_a_linf_only_report_reads_as_before(tmp_path):
    from robustlab.reporting import write_report

    _experiment(tmp_path, {})
    md = write_report(tmp_path)["md"].read_text()
    heads = [ln for ln in md.splitlines() if ln.startswith(("## Table 1", "### "))]
    assert heads == ["## Table 1: clean and adversarial accuracy",
                     "### mnist / lenet5, recipe protocol, budget `standard`: eps = 0.3 "
                     "(linf)"]
    assert "mnist / lenet5, recipe protocol, eps 0.3: **pgd-at**" in md
    assert "**mnist, recipe protocol, budget `standard` (eps = 0.3)**" in md
    assert "Linf, eps" not in md and "Not run:" not in md


def test_unlabelled_evaluations_at_two_norms_never_share_a_block(tmp_path):
    """`robustlab evaluate` files carry no budget label: one at linf eps 0.3 and one at l2
    eps 0.3 are two blocks, not one."""
    from robustlab.reporting.collect import load_records
    from robustlab.reporting.tables import table1

    for name, norm in (("a", "linf"), ("b", "l2")):
        run = tmp_path / name
        run.mkdir()
        data = _eval_file("pgd-at", norm, 0.3, "", *LINF["pgd-at"])
        data.pop("label")
        data["settings"].pop("label")
        (run / "eval.json").write_text(json.dumps(data))
    records, _ = load_records(tmp_path)
    assert sorted(r["label"] for r in records) == ["eps=0.3", "l2 eps=0.3"]
    assert [b["norm"] for b in table1(records)] == ["linf", "l2"]
