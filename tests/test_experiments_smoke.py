"""End to end: `reproduce --preset smoke` trains, evaluates, reports; the report is checked
against results.json and the eval files; rerunning resumes; the audit separates a masked model
from a pgd-at one."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from robustlab.experiments.presets import get_preset
from robustlab.experiments.runner import reproduce
from robustlab.reporting.figures import FILES as FIGURE_FILES

# the reproduce pipeline (run once per session: tests/conftest.py smoke_experiment)
pytestmark = pytest.mark.integration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke(smoke_experiment):
    """The session's one smoke pipeline (tests/conftest.py): read-only, copied to rerun."""
    return smoke_experiment


def test_smoke_writes_every_report_file(smoke):
    out, html = smoke
    assert html == out / "report.html"
    for name in ("report.md", "report.html", "results.json", "results.csv", "experiment.json"):
        assert (out / name).is_file(), name
    figs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figs == sorted(FIGURE_FILES)
    for f in (out / "figures").glob("*.png"):
        assert f.read_bytes()[:8] == PNG_MAGIC and f.stat().st_size > 10_000
    assert html.read_text().count("data:image/png;base64,") == len(FIGURE_FILES)


def test_smoke_tables_match_results_and_eval_files(smoke):
    out, _ = smoke
    results = json.loads((out / "results.json").read_text())
    md = (out / "report.md").read_text()
    # smoke is not a paper preset: no claims section, and the summary says so
    assert "## Table 1" in md and "## Overhead" in md
    assert "## Claims check" not in md and "No claims check" in md
    assert "One seed only" in md
    assert {(b["protocol"], b["label"], b["eps"]) for b in results["table1"]} == {
        ("paper", "paper", 0.03), ("recipe", "standard", 0.3)}
    for block in results["table1"]:
        # every method is either a row or listed apart with its training verdict
        shown = [r["method"] for r in block["rows"]]
        failed = {f["method"]: f["health"] for f in block["failed"]}
        assert sorted(shown + list(failed)) == ["hybrid", "pgd-at", "standard"]
        assert "standard" in shown and "ok" not in failed.values()
        for method in failed:
            assert f"| {method} |" not in md.split("Not compared")[0].split(
                f"protocol, budget `{block['label']}`")[-1]
        for row in block["rows"]:
            clean = re.escape(row["cells"]["clean"]["text"])
            pattern = rf"^\| {re.escape(row['method'])} \| 1 \| {clean} \|"
            assert any(re.match(pattern, ln) for ln in md.splitlines()), row["method"]
    for rec in results["records"]:  # every record equals its eval file
        ev = json.loads((out / rec["eval_file"]).read_text())
        assert rec["clean"] == ev["clean"]["acc"]
        assert rec["pgd"] == ev["attacks"]["pgd"]["acc"]
        assert rec["worst"] == ev["worst_case"]["acc"]
        bits = ev["per_sample"]["correct"]
        assert ev["worst_case"]["acc"] == pytest.approx(bits["worst_case"].count("1") / ev["n"])
    assert len(results["records"]) == 6  # per protocol: standard + 2 methods at its budget
    for rec in results["records"]:  # the verdict is the run's own summary.json
        summary = json.loads((out / rec["run_dir"] / "summary.json").read_text())
        assert rec["health"] == summary["health"]
        assert rec["protocol"] == ("recipe" if rec["run"].endswith("-recipe-s0") else "paper")
    assert {c["verdict"] for c in results["claims"]} <= {"supported", "not supported",
                                                         "not measured here"}


def test_smoke_rerun_resumes_without_recomputing(smoke, capsys, tmp_path):
    out = Path(shutil.copytree(smoke[0], tmp_path / "smoke"))  # the shared one stays as it is
    evals = sorted((out / "runs").rglob("eval/*.json"))
    mtimes = [p.stat().st_mtime_ns for p in evals]
    reproduce(get_preset("smoke"), out, workers=1, threads=1, report=False)
    text = capsys.readouterr().out
    assert text.count("cached") == 12  # 6 trainings + 6 evaluation jobs
    assert [p.stat().st_mtime_ns for p in evals] == mtimes


def test_audit_flags_masked_model_and_passes_pgd_at(smoke):
    from robustlab.defenses import create_defense
    from robustlab.evaluation import EvalSettings, evaluate_model
    from robustlab.runs.load import load_run

    out, _ = smoke
    pgd_at = next((out / "runs" / "mnist-lenet5-pgd-at-eps0.03-s0" / "eval").glob("*.json"))
    audit = json.loads(pgd_at.read_text())["audit"]
    assert not audit["flagged"], audit
    std = load_run(out / "runs" / "mnist-lenet5-standard-s0", device="cpu")
    masked = create_defense("bit-depth", model=std.model, bits=1).eval()
    settings = EvalSettings(attacks=("fgsm", "pgd"), eps=0.3, n=60, curve_factors=(0.0, 1.0),
                            curve_n=60, audit_n=60, audit_square_queries=100, adaptive=False,
                            attack_options={"pgd": {"steps": 5}})
    x, y = std.data.test.x, std.data.test.y
    r = evaluate_model(masked, x, y, settings)
    assert r["audit"]["flagged"]
    assert {"bpda", "gradients", "large_eps"} <= set(r["audit"]["flags"])


def test_report_shows_adaptive_and_labelled_non_adaptive_numbers(smoke, tmp_path):
    """A standard model behind 1-bit bit-depth: the report lists both numbers, labelled, and
    the adaptive (BPDA) PGD accuracy is the lower one."""
    from robustlab.common.files import atomic_write_json
    from robustlab.defenses import create_defense
    from robustlab.evaluation import EvalSettings
    from robustlab.evaluation.runs import evaluate_loaded_run
    from robustlab.reporting import write_report
    from robustlab.runs.load import load_run

    out, _ = smoke
    loaded = load_run(out / "runs" / "mnist-lenet5-standard-s0", device="cpu")
    loaded.model = create_defense("bit-depth", model=loaded.model, bits=1).eval()
    loaded.cfg = loaded.cfg.replace(defense="bit-depth", defense_options={"bits": 1})
    settings = EvalSettings(attacks=("pgd",), eps=0.3, n=60, curve_factors=(0.0, 1.0),
                            curve_n=30, audit_n=30, audit_square_queries=50,
                            attack_options={"pgd": {"steps": 10}})
    result = evaluate_loaded_run(loaded, settings, non_adaptive=True)
    run_dir = tmp_path / "defended-run"
    atomic_write_json(run_dir / "eval.json", result)
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Preprocessing defenses: adaptive versus non-adaptive attacks" in md
    assert "NON-ADAPTIVE" in md and "bit-depth" in md
    section = md.split("Preprocessing defenses: adaptive versus non-adaptive attacks")[1]
    row = next(line for line in section.splitlines() if line.startswith("| defended-run |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    adaptive_pgd, naive_pgd = float(cells[4]), float(cells[5])
    assert adaptive_pgd == pytest.approx(100 * result["attacks"]["pgd"]["acc"], abs=0.05)
    assert naive_pgd == pytest.approx(100 * result["non_adaptive"]["attacks"]["pgd"]["acc"],
                                      abs=0.05)
    assert adaptive_pgd < naive_pgd  # BPDA sees through the rounding; naive PGD does not


def _without_timings(value):
    """`value` with every wall-time / memory / executor-dependent field dropped."""
    noisy = ("time", "seconds", "_s", "mem", "overhead", "timing", "eval_file")
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items()
                if not any(n in k for n in noisy)}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_ray_executor_gives_the_same_results(smoke, tmp_path):
    """`--executor ray` (2 Ray tasks at a time, local Ray) writes the same numbers as local
    execution: every accuracy, every per-sample bit, the same Table 1. (The one run of the
    pipeline besides the session's: Ray startup is most of its ~20 s, so it runs all 6 jobs.)"""
    pytest.importorskip("ray", reason="the optional extra robustlab[ray]")
    local_out, _ = smoke
    before = torch.get_num_threads()
    try:
        reproduce(get_preset("smoke"), tmp_path / "ray", workers=2, threads=1, executor="ray")
    finally:
        torch.set_num_threads(before)
    local = json.loads((local_out / "results.json").read_text())
    ray_results = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert len(ray_results["records"]) == len(local["records"]) > 0
    assert _without_timings(ray_results["records"]) == _without_timings(local["records"])
    assert _without_timings(ray_results["table1"]) == _without_timings(local["table1"])
    for rec in local["records"]:
        a = json.loads((local_out / rec["eval_file"]).read_text())["per_sample"]
        b = json.loads((tmp_path / "ray" / rec["eval_file"]).read_text())["per_sample"]
        assert a == b, rec["eval_file"]


def test_unknown_or_missing_executor_fails_before_compute(tmp_path, monkeypatch):
    from robustlab.common.errors import ConfigError

    with pytest.raises(ConfigError, match="--executor: expected one of local, ray"):
        reproduce(get_preset("smoke"), tmp_path / "x", executor="dask")
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"pip install 'robustlab\[ray\]'"):
        reproduce(get_preset("smoke"), tmp_path / "y", executor="ray")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
