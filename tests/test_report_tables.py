"""Report tables built from what was run: one column per evaluated attack, the claims section
only for the paper presets, the summary's best method and its margin, the 95% intervals in
results.csv and as tooltips, audit checks rendered whatever their names."""

from __future__ import annotations

import csv
import json

import pytest

from robustlab.reporting import write_report
from robustlab.reporting.render import column_kinds, to_html, to_markdown


def _eval(method: str, seed: int, clean: float, accs: dict[str, float], worst: float, *,
          checks: list[dict] | None = None, flagged: bool = False) -> dict:
    """A minimal robustlab.eval/1 file with the attacks `accs` (in this order)."""
    n = 100
    attacks = {name: {"acc": acc, "gap": clean - acc, "confidence": {"mean": 0.7}}
               for name, acc in sorted(accs.items())}  # the eval file sorts its keys
    return {
        "schema": "robustlab.eval/1", "n": n, "label": "standard",
        "settings": {"eps": 0.3, "norm": "linf", "attacks": list(accs), "curve_n": 50,
                     "audit_n": 20, "attack_options": {}},
        "clean": {"acc": clean}, "attacks": attacks,
        "worst_case": {"acc": worst, "gap": clean - worst, "attacks": list(accs)},
        "mixed": {"attack": "pgd", "acc": (clean + accs.get("pgd", worst)) / 2},
        "curve": {"attack": "pgd", "points": [{"factor": 0.0, "eps": 0.0, "acc": clean,
                                               "n": 50}]},
        "audit": {"flagged": flagged, "flags": [], "n": 20, "checks": checks or []},
        "timing": {"total_s": 1.0}, "per_sample": {},
        "model": {"num_classes": 10},
        "run": {"dataset": "mnist", "model": "lenet5", "method": method, "seed": seed,
                "eps": 0.3},
        "training": {"epochs": 3, "n_train": 2000, "epoch_time_s_mean": 1.0,
                     "train_time_s": 3.0, "peak_mem_mb": 100.0},
    }


def _write(root, name: str, data: dict) -> None:
    run = root / "runs" / name
    run.mkdir(parents=True)
    (run / "eval.json").write_text(json.dumps(data))
    (run / "config.json").write_text(json.dumps({"train": {"recipe": "paper"}}))
    (run / "summary.json").write_text(json.dumps({"health": "ok"}))


def _experiment(root, preset: str) -> None:
    jobs = [{"run_dir": f"runs/{r.name}", "evals": [{"path": f"runs/{r.name}/eval.json"}]}
            for r in sorted((root / "runs").iterdir())]
    (root / "experiment.json").write_text(json.dumps(
        {"jobs": jobs, "preset": {"name": preset, "headline": "mnist"}}))


def _md_table_after(md: str, marker: str) -> list[list[str]]:
    """The first Markdown table after `marker`, as rows of cells (header included)."""
    lines = md.split(marker, 1)[1].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| "))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        if not ln.startswith("|---"):
            rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


@pytest.fixture
def pgd_square(tmp_path):
    """Two methods evaluated with pgd and square only; their per-image worst case is below
    both attacks (they fool different images)."""
    _write(tmp_path, "std", _eval("standard", 0, 0.99, {"pgd": 0.10, "square": 0.30}, 0.05))
    _write(tmp_path, "at", _eval("pgd-at", 0, 0.97, {"pgd": 0.80, "square": 0.85}, 0.70))
    return tmp_path, write_report(tmp_path)


def test_columns_are_the_evaluated_attacks(pgd_square):
    root, paths = pgd_square
    md = paths["md"].read_text()
    table = _md_table_after(md, "### mnist / lenet5")
    assert table[0] == ["Method", "Seeds", "Clean (%)", "PGD (%)", "Square (%)",
                        "Worst case (%)", "Gap (%)", "Mixed (%)"]
    assert table[2] == ["pgd-at", "1", "97.0", "80.0", "85.0", "70.0", "27.0", "88.5"]
    assert "FGSM" not in md and "AutoAttack (%)" not in md
    # the worst case below every column is explained in the block's note
    assert "For standard, pgd-at it is below every attack column" in md
    assert "different attacks fool different images" in md
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [float(r["acc_square"]) for r in rows] == [0.30, 0.85]  # sorted: standard first
    assert rows[0]["attacks"] == "pgd;square"
    block = json.loads(paths["json"].read_text())["table1"][0]
    assert [c["key"] for c in block["columns"]] == ["clean", "pgd", "square", "worst", "gap",
                                                    "mixed"]


def test_blocks_with_different_attacks_show_the_union_and_na(tmp_path):
    _write(tmp_path, "a", _eval("standard", 0, 0.99, {"fgsm": 0.2}, 0.2))
    _write(tmp_path, "b", _eval("pgd-at", 0, 0.97, {"pgd": 0.8, "square": 0.85}, 0.8))
    md = write_report(tmp_path)["md"].read_text()
    table = _md_table_after(md, "### mnist / lenet5")
    assert table[0][3:6] == ["FGSM (%)", "PGD (%)", "Square (%)"]
    assert table[1][3:6] == ["20.0", "n/a", "n/a"]
    assert table[2][3:6] == ["n/a", "80.0", "85.0"]
    assert "below every attack column" not in md  # worst = the single attack here


@pytest.mark.parametrize("preset, shown", [(None, False), ("smoke", False), ("quick", False),
                                           ("paper-cpu", True), ("paper", True)])
def test_claims_section_only_for_paper_presets(tmp_path, preset, shown):
    _write(tmp_path, "std", _eval("standard", 0, 0.99, {"pgd": 0.1}, 0.1))
    _write(tmp_path, "hy", _eval("hybrid", 0, 0.98, {"pgd": 0.8}, 0.8))
    if preset:
        _experiment(tmp_path, preset)
    paths = write_report(tmp_path)
    md = paths["md"].read_text()
    results = json.loads(paths["json"].read_text())
    assert ("## Claims check" in md) is shown
    assert results["claims_checked"] is shown
    assert bool(results["claims"]) is shown
    if shown:  # every claim's verdict in one line of the summary
        summary = md.split("## Summary")[1].split("## Table 1")[0]
        assert summary.count("**not measured here**: ") >= 1
        assert len([ln for ln in summary.splitlines() if ln.startswith("- **")
                    and "**: " in ln]) == len(results["claims"])
    else:
        assert "No claims check" in md and "Claims check" not in paths["html"].read_text()


def _three_seeds(tmp_path, hybrid_gain: float) -> dict:
    for seed in range(3):
        d = 0.01 * seed
        _write(tmp_path, f"at{seed}", _eval("pgd-at", seed, 0.97, {"pgd": 0.70 + d}, 0.70 + d))
        acc = 0.70 + hybrid_gain + d
        _write(tmp_path, f"hy{seed}", _eval("hybrid", seed, 0.97, {"pgd": acc}, acc))
    return write_report(tmp_path)


def test_summary_best_method_margin_beyond_spread(tmp_path):
    paths = _three_seeds(tmp_path, 0.05)  # 5 pp apart, std 1 pp each
    md = paths["md"].read_text()
    assert ("**hybrid**, worst case 76.0 %, 5.0 pp above pgd-at — more than the seeds' "
            "spread") in md
    best = json.loads(paths["json"].read_text())["table1"][0]["best"]
    assert best["margin"] == pytest.approx(5.0) and best["exceeds_spread"] is True


def test_summary_best_method_margin_within_spread(tmp_path):
    paths = _three_seeds(tmp_path, 0.01)
    assert "1.0 pp above pgd-at — within the seeds' spread" in paths["md"].read_text()


def test_summary_skips_flagged_and_says_one_seed(tmp_path):
    _write(tmp_path, "std", _eval("standard", 0, 0.99, {"pgd": 0.5}, 0.5))
    _write(tmp_path, "hy", _eval("hybrid", 0, 0.98, {"pgd": 0.9}, 0.9, flagged=True))
    _write(tmp_path, "at", _eval("pgd-at", 0, 0.97, {"pgd": 0.6}, 0.6))
    md = write_report(tmp_path)["md"].read_text()
    assert ("**pgd-at**, worst case 60.0 %, 10.0 pp above standard (one seed: the seeds' "
            "spread is unknown)") in md
    assert "90.0 ⚠" in md  # the flagged hybrid keeps its row, marked


def test_cells_are_compact_and_the_interval_is_in_csv_and_tooltip(tmp_path):
    paths = _three_seeds(tmp_path, 0.05)
    cell = json.loads(paths["json"].read_text())["table1"][0]["rows"][1]["cells"]["pgd"]
    assert cell["text"] == "76.0 ± 1.0"
    rows = [r for r in csv.DictReader(paths["csv"].open()) if r["method"] == "hybrid"]
    assert len(rows) == 3
    for r in rows:
        assert float(r["ci95_low_pgd"]) == pytest.approx(cell["ci95"][0])
        assert float(r["ci95_high_worst"]) == pytest.approx(cell["ci95"][1])
    low, high = cell["ci95"]
    assert f"title='95% CI [{low:.1f}, {high:.1f}] over 3 seeds'" in paths["html"].read_text()


def test_protocol_is_stated_above_each_table(pgd_square):
    _, paths = pgd_square
    md = paths["md"].read_text()
    block = md.split("### mnist / lenet5")[1]
    note = block.split("| Method")[0]
    assert "Protocol: **paper protocol" in note and "3 epochs" in note
    assert "training set 2,000 images" in note
    assert "100 test images (Figure 3's eps curve on the first 50, the audit on the first 20)" \
        in note


def test_autoattack_version_is_named(tmp_path):
    data = _eval("standard", 0, 0.99, {"autoattack": 0.1}, 0.1)
    data["settings"]["attack_options"] = {"autoattack": {"steps": 20, "n_queries": 500}}
    _write(tmp_path, "a", data)
    _write(tmp_path, "b", _eval("pgd-at", 0, 0.99, {"autoattack": 0.5}, 0.5))
    md = write_report(tmp_path)["md"].read_text()
    assert "AutoAttack custom counts: n_queries=500, steps=20 / standard" in md


def test_audit_renders_any_check_and_status(tmp_path):
    checks = [{"name": "more_steps", "status": "pass", "reason": "more steps: 0.50 vs 0.50",
               "values": {}},
              {"name": "collapse", "status": "flag", "reason": "predicts one class (98 %)",
               "values": {"share": 0.98}},
              {"name": "nonfinite_logits", "status": "skipped", "reason": "not run",
               "values": {}},
              {"name": "new_check", "status": "warn", "reason": "a status of tomorrow",
               "values": {}}]
    _write(tmp_path, "c", _eval("standard", 0, 0.02, {"pgd": 0.0}, 0.0, checks=checks,
                                flagged=True))
    paths = write_report(tmp_path)
    md = paths["md"].read_text()
    table = _md_table_after(md, "## Gradient-masking audit")
    assert table[0] == ["Method", "Seed", "Verdict", "more steps", "collapse",
                        "nonfinite logits", "new check"]
    assert table[1] == ["standard", "0", "FLAGGED", "✓", "⚠ flag", "not run", "warn"]
    assert "**mnist, paper protocol, budget `standard` (eps = 0.3)**" in md
    assert "| c | standard | collapse: predicts one class (98 %) |" in md  # the reasons
    html = paths["html"].read_text()
    assert "title='predicts one class (98 %)'" in html and "title='c'>standard<" in html


def test_alignment_numbers_right_prose_left(tmp_path):
    rows = [["pgd-at", "97.0 ± 1.0 ⚠", "n/a", "a long sentence " * 5],
            ["hybrid", "4.38x", "-", "another long sentence " * 4]]
    assert column_kinds(rows, 4) == ["text", "num", "text", "prose"]
    md = to_markdown([("table", ["Method", "A", "B", "Claim"], rows)], tmp_path)
    assert md.splitlines()[1] == "|---|---:|---|---|"
    html = to_html([("table", ["Method", "A", "B", "Claim"], rows)], "t")
    assert "<td class='num'>97.0 ± 1.0 ⚠</td>" in html
    assert "<td class='prose'>a long sentence" in html and "<td class='key'>pgd-at" in html


def test_html_has_a_table_of_contents_and_rejects_unknown_blocks(pgd_square):
    _, paths = pgd_square
    html = paths["html"].read_text()
    assert "<nav class='toc'>" in html
    assert "<a href='#table-1-clean-and-adversarial-accuracy'>" in html
    assert "<h2 id='table-1-clean-and-adversarial-accuracy'>" in html
    with pytest.raises(ValueError, match="unknown kind 'video'"):
        to_html([("video", "x")], "t")


def test_block_of_failed_runs_only_has_no_best(tmp_path):
    _write(tmp_path, "c", _eval("pgd-at", 0, 0.11, {"pgd": 0.11}, 0.11))
    (tmp_path / "runs" / "c" / "summary.json").write_text(json.dumps({"health": "collapsed"}))
    paths = write_report(tmp_path)
    md = paths["md"].read_text()
    assert "eps 0.3: no compared, unflagged model" in md
    assert "NOT COMPARED (collapsed)" in md
    row = next(csv.DictReader(paths["csv"].open()))
    assert row["health"] == "collapsed" and "ci95_low_pgd" not in row


def test_below_chance_model_is_called_out(tmp_path):
    """A collapsed model (2 % clean on 10 classes) whose audit passed: the block says it did
    not learn, so its gap of 0 is not read as robustness."""
    _write(tmp_path, "c", _eval("mart", 0, 0.02, {"pgd": 0.02}, 0.02))
    _write(tmp_path, "ok", _eval("pgd-at", 0, 0.97, {"pgd": 0.8}, 0.8))
    paths = write_report(tmp_path)
    assert "**mart: clean accuracy below chance**" in paths["md"].read_text()
    assert json.loads(paths["json"].read_text())["table1"][0]["below_chance"] == ["mart"]


def test_mixed_column_only_when_measured_and_its_attack_named(tmp_path):
    data = _eval("standard", 0, 0.99, {"square": 0.3}, 0.3)
    data["mixed"] = {"attack": "square", "acc": 0.645}
    _write(tmp_path, "a", data)
    md = write_report(tmp_path)["md"].read_text()
    assert "mixed = accuracy on a test set of clean and Square halves" in md
    other = tmp_path / "other"
    other.mkdir()
    data.pop("mixed")
    _write(other, "a", data)
    md = write_report(other)["md"].read_text()
    table = _md_table_after(md, "### mnist / lenet5")
    assert table[0][-2:] == ["Worst case (%)", "Gap (%)"] and "Mixed (%)" not in md
