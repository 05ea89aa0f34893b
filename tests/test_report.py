"""Reporting from synthetic result files: statistics, Table 1, claims, figures, HTML, CSV."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from robustlab.reporting import write_report
from robustlab.reporting.stats import summarize, t_quantile_975

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_t_quantiles_and_summary():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(2) == 4.303
    assert t_quantile_975(30) == 2.042 and 1.96 < t_quantile_975(1000) < 1.99
    s = summarize([1.0, 2.0, 3.0])
    assert s.mean == 2.0 and s.std == pytest.approx(1.0)
    assert s.ci_low == pytest.approx(2.0 - 4.303 / 3 ** 0.5)
    one = summarize([0.5])
    assert one.std is None and one.ci_low is None
    assert summarize([None]).n == 0


def _fake_eval(method: str, seed: int, eps: float, clean: float, adv: float,
               flagged: bool = False) -> dict:
    n = 10
    attacks = {}
    for i, name in enumerate(("fgsm", "pgd", "cw-linf", "autoattack")):
        # fgsm weakest ... autoattack strongest; never above clean (robust needs clean-correct)
        acc = min(clean, adv + 0.02 * (3 - i))
        attacks[name] = {"acc": acc, "gap": clean - acc, "success_rate": 0.5,
                         "mixed_acc": (clean + acc) / 2,
                         "confidence": {"mean": 0.6 + adv / 4, "correct": 0.8,
                                        "incorrect": 0.4},
                         "ece": 0.1, "perturbation": {}, "seconds": 1.0}
    k = round(n * attacks["pgd"]["acc"])
    correct_pgd = "1" * k + "0" * (n - k)
    return {
        "schema": "robustlab.eval/1", "settings": {"eps": eps, "norm": "linf", "label": "",
                                                   "adaptive": True},
        "settings_key": "k", "model": {}, "n": n, "label": "budget",
        "clean": {"acc": clean, "confidence": {}, "ece": 0.05},
        "attacks": attacks,
        "worst_case": {"acc": adv, "gap": clean - adv, "attacks": list(attacks)},
        "mixed": {"attack": "pgd", "acc": (clean + adv) / 2},
        "curve": {"attack": "pgd", "norm": "linf", "points": [
            {"factor": f, "eps": eps * f, "acc": max(0.0, clean - f * (clean - adv)), "n": n}
            for f in (0.0, 0.5, 1.0)]},
        "audit": {"flagged": flagged, "flags": ["bpda"] if flagged else [],
                  "checks": [{"name": "bpda", "status": "flag" if flagged else "pass",
                              "reason": "r", "values": {}}]},
        "timing": {"total_s": 2.0},
        "per_sample": {"correct": {"pgd": correct_pgd},
                       "confidence": {"pgd": [0.9 - 0.05 * i for i in range(n)]}},
        "run": {"dataset": "mnist", "model": "lenet5", "method": method, "seed": seed,
                "eps": None if method == "standard" else eps},
        "training": {"train_time_s": 10.0 * (1 if method == "standard" else 3),
                     "epoch_time_s_mean": 5.0 * (1 if method == "standard" else 3),
                     "peak_mem_mb": 500.0, "epochs": 2},
    }


def _as_experiment(root, preset: str = "paper-cpu", headline: str = "mnist") -> None:
    """Make `root` an experiment folder of `preset`: experiment.json lists every run's eval."""
    jobs = [{"run_dir": f"runs/{run.name}", "role": None,
             "evals": [{"path": f"runs/{run.name}/eval.json"}]}
            for run in sorted((root / "runs").iterdir())]
    (root / "experiment.json").write_text(json.dumps(
        {"schema": "robustlab.experiment/1", "jobs": jobs,
         "preset": {"name": preset, "headline": headline, "description": "test preset"}}))


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    numbers = {"standard": (0.99, 0.01), "pgd-at": (0.97, 0.40), "trades": (0.96, 0.45),
               "hybrid": (0.98, 0.80)}
    for method, (clean, adv) in numbers.items():
        for seed in (0, 1, 2):
            run = root / "runs" / f"{method}-s{seed}"
            run.mkdir(parents=True)
            data = _fake_eval(method, seed, 0.3, clean - 0.01 * seed, adv + 0.01 * seed,
                              flagged=(method == "trades" and seed == 1))
            (run / "eval.json").write_text(json.dumps(data))
            if method == "hybrid":
                rows = [{"epoch": e, "eps": 0.03 + 0.135 * (e - 1), "alpha": 0.5 - 0.1 * e}
                        for e in (1, 2, 3)]
                (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _as_experiment(root)
    return root, write_report(root)


def test_table1_numbers_match_results_json(report_dir):
    root, paths = report_dir
    results = json.loads(paths["json"].read_text())
    md = paths["md"].read_text()
    (block,) = results["table1"]
    rows = {r["method"]: r for r in block["rows"]}
    assert list(rows) == ["standard", "pgd-at", "trades", "hybrid"]
    pgd = rows["hybrid"]["cells"]["pgd"]
    vals = [100 * (0.80 + 0.01 * s + 0.04) for s in (0, 1, 2)]  # pgd = adv + 0.04
    assert pgd["mean"] == pytest.approx(sum(vals) / 3)
    assert pgd["std"] == pytest.approx(1.0)
    assert pgd["ci95"][0] == pytest.approx(pgd["mean"] - 4.303 / 3 ** 0.5)
    for row in block["rows"]:  # every cell shown in the Markdown table comes from results.json
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {row['method']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2:] == [row["cells"][c]["text"] for c in
                             ("clean", "fgsm", "pgd", "cw-linf", "autoattack", "worst", "gap",
                              "mixed")]
        assert row["cells"]["pgd"]["text"].count("±") == 1  # compact: the CI is the tooltip
        assert "95% CI [" in row["cells"]["pgd"]["hover"]
    assert [c["key"] for c in block["columns"]] == ["clean", "fgsm", "pgd", "cw-linf",
                                                    "autoattack", "worst", "gap", "mixed"]
    assert "⚠" in rows["trades"]["cells"]["pgd"]["text"]  # one flagged seed marks the row
    assert "⚠" not in rows["hybrid"]["cells"]["pgd"]["text"]


def test_claims_verdicts(report_dir):
    _, paths = report_dir
    claims = {c["id"]: c for c in json.loads(paths["json"].read_text())["claims"]}
    assert claims["adv-accuracy"]["verdict"] == "supported"  # +40 / +35 pp
    assert claims["gap"]["verdict"] == "supported"
    assert claims["pgd-best"]["verdict"] == "supported"
    assert claims["time"]["verdict"] == "not supported"  # 3x standard per epoch
    assert "3.00x" in claims["time"]["measured"]
    assert claims["memory"]["verdict"] == "supported"
    assert claims["clean"]["verdict"] == "supported"
    assert claims["scalability"]["verdict"] == "not measured here"


def test_figures_are_pngs_and_html_embeds_them(report_dir):
    from PIL import Image

    root, paths = report_dir
    figs = sorted((root / "figures").glob("*.png"))
    assert figs and figs[0].name.startswith("fig1_")
    for f in figs:
        assert f.read_bytes()[:8] == PNG_MAGIC
        with Image.open(f) as im:
            assert im.size[0] > 400 and im.size[1] > 300
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == len(figs)
    assert "Claims check" in html and "<table>" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


def test_csv_has_one_row_per_evaluation(report_dir):
    _, paths = report_dir
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 12
    assert {r["method"] for r in rows} == {"standard", "pgd-at", "trades", "hybrid"}
    assert float(rows[0]["clean"]) > 0.9


@pytest.mark.integration  # a fresh interpreter
def test_reporting_never_imports_torch(report_dir):
    root, _ = report_dir
    code = ("import sys; from robustlab.reporting import write_report; "
            f"write_report({str(root)!r}); "
            "assert 'torch' not in sys.modules, 'reporting imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_single_seed_says_no_ci(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "eval.json").write_text(json.dumps(_fake_eval("standard", 0, 0.3, 0.99, 0.1)))
    paths = write_report(tmp_path)
    assert "One seed only" in paths["md"].read_text()
    cell = json.loads(paths["json"].read_text())["table1"][0]["rows"][0]["cells"]["clean"]
    assert cell["ci95"] is None and cell["text"] == "99.0"


def _write_run(root, name, method, clean, adv, *, recipe=None, health=None, metrics=None):
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "eval.json").write_text(json.dumps(_fake_eval(method, 0, 0.3, clean, adv)))
    (run / "config.json").write_text(json.dumps({"train": {"recipe": recipe}}))
    if health is not None:
        (run / "summary.json").write_text(json.dumps({"health": health}))
    if metrics is not None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))


def test_collapsed_runs_are_listed_apart_and_protocols_split_the_table(tmp_path):
    """A collapsed PGD-AT (the constant classifier, 11.35 %) is never a row of Table 1, never
    in a claim, and its protocol block says which hyper-parameters were used."""
    _write_run(tmp_path, "pgd-at-paper", "pgd-at", 0.1135, 0.1135, recipe="paper",
               health="collapsed")
    _write_run(tmp_path, "hybrid-paper", "hybrid", 0.98, 0.70, recipe="paper", health="ok")
    # a run made before summary.json had `health`: the verdict is read off metrics.jsonl
    _write_run(tmp_path, "mart-old", "mart", 0.10, 0.10,
               metrics=[{"epoch": 1, "collapsed": True}])
    _write_run(tmp_path, "pgd-at-recipe", "pgd-at", 0.98, 0.75, recipe="mnist-linf",
               health="ok")
    _write_run(tmp_path, "hybrid-recipe", "hybrid", 0.98, 0.72, recipe="mnist-linf",
               health="ok")
    _as_experiment(tmp_path)
    paths = write_report(tmp_path)
    results = json.loads(paths["json"].read_text())
    blocks = {b["protocol"]: b for b in results["table1"]}
    assert set(blocks) == {"paper", "recipe"}
    assert [r["method"] for r in blocks["paper"]["rows"]] == ["hybrid"]
    assert sorted(f["method"] for f in blocks["paper"]["failed"]) == ["mart", "pgd-at"]
    assert {f["health"] for f in blocks["paper"]["failed"]} == {"collapsed"}
    assert [r["method"] for r in blocks["recipe"]["rows"]] == ["pgd-at", "hybrid"]
    claims = {c["id"]: c for c in results["claims"]}
    measured = claims["adv-accuracy"]["measured"]
    assert "vs pgd-at" in measured and "(recipe protocol)" in measured
    assert "(paper protocol): " not in measured  # the collapsed PGD-AT is no baseline
    md = paths["md"].read_text()
    assert "did not learn" in md and "NOT COMPARED (collapsed)" in md
    table1 = md.split("## Table 1")[1].split("\n## ")[0]
    table_lines = [ln for ln in table1.splitlines() if ln.startswith("| pgd-at |")]
    assert len(table_lines) == 1  # only the recipe block's row; the collapsed one is apart


def test_a_run_whose_test_fgsm_beats_pgd_by_far_is_listed_apart_as_overfit(tmp_path):
    """Catastrophic overfitting read off the evaluation (reporting/overfit.py): the quick
    demo's FGSM hybrid trained with `health` ok (its guard kept quiet) yet scores 90.8 % under
    FGSM and 49.8 % under PGD at its own eps. It must not be a row; a healthy gap (pgd-at:
    4 points) and a gap at another budget than the training eps are left alone."""
    _write_run(tmp_path, "hybrid-fgsm", "hybrid-fgsm", 0.98, 0.40, recipe="mnist-linf",
               health="ok")
    ev = json.loads((tmp_path / "runs/hybrid-fgsm/eval.json").read_text())
    ev["attacks"]["fgsm"]["acc"], ev["attacks"]["pgd"]["acc"] = 0.908, 0.498
    (tmp_path / "runs/hybrid-fgsm/eval.json").write_text(json.dumps(ev))
    _write_run(tmp_path, "pgd-at", "pgd-at", 0.98, 0.85, recipe="mnist-linf", health="ok")
    _write_run(tmp_path, "trades", "trades", 0.98, 0.80, recipe="mnist-linf", health="ok")
    ev = json.loads((tmp_path / "runs/trades/eval.json").read_text())
    ev["run"]["eps"] = 0.1  # trained at 0.1, evaluated at 0.3: a large gap is legitimate
    ev["attacks"]["fgsm"]["acc"], ev["attacks"]["pgd"]["acc"] = 0.7, 0.3
    (tmp_path / "runs/trades/eval.json").write_text(json.dumps(ev))
    _as_experiment(tmp_path)
    paths = write_report(tmp_path)
    block = json.loads(paths["json"].read_text())["table1"][0]
    assert [r["method"] for r in block["rows"]] == ["pgd-at", "trades"]
    (failed,) = block["failed"]
    assert failed["method"] == "hybrid-fgsm" and failed["health"] == "catastrophic overfitting"
    assert failed["health_note"] == ("test FGSM 90.8 % vs PGD 49.8 % at eps 0.3 "
                                     "(gap above 15 pp)")
    md = paths["md"].read_text()
    assert "catastrophic overfitting: test FGSM 90.8 % vs PGD 49.8 %" in md
    rows = {r["run"]: r for r in csv.DictReader(paths["csv"].open())}
    assert rows["hybrid-fgsm"]["health"] == "catastrophic overfitting"
    assert rows["pgd-at"]["health"] == "ok" and rows["trades"]["health"] == "ok"
