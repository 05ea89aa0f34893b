"""`write_report(DIR)`: report.md, report.html, figures/*.png, results.json, results.csv."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from robustlab.common.files import atomic_write_text
from robustlab.reporting import figures
from robustlab.reporting.claims import check_claims
from robustlab.reporting.collect import load_records
from robustlab.reporting.render import to_html, to_markdown
from robustlab.reporting.tables import (
    FLAG,
    PROTOCOL_NAMES,
    TABLE1_COLUMNS,
    audit_rows,
    overhead,
    table1,
)

RESULTS_SCHEMA = "robustlab.results/1"


def _fmt(value: float | None, fmt: str = ".1f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def write_report(root: str | Path) -> dict[str, Path]:
    """Read every result under `root`, write the report files into `root`; return their paths
    (keys md, html, json, csv, figures)."""
    root = Path(root)
    records, experiment = load_records(root)
    preset = (experiment or {}).get("preset") or {}
    headline = preset.get("headline") or records[0]["dataset"]
    blocks = table1(records)
    over = overhead(records)
    claims = check_claims(blocks, over, headline)
    figdir = root / "figures"
    figs = figures.draw_all(records, figdir, headline)
    doc = _document(records, preset, blocks, over, claims, figs)
    paths = {
        "md": atomic_write_text(root / "report.md", to_markdown(doc, root)),
        "html": atomic_write_text(root / "report.html", to_html(doc, "robustlab report")),
        "json": atomic_write_text(root / "results.json", json.dumps(
            {"schema": RESULTS_SCHEMA, "preset": preset.get("name"), "headline": headline,
             "records": [_public(r) for r in records], "table1": blocks, "overhead": over,
             "claims": claims, "figures": [str(p.relative_to(root)) for p, _ in figs if p]},
            indent=2, sort_keys=True) + "\n"),
        "csv": atomic_write_text(root / "results.csv", _csv(records)),
    }
    paths["figures"] = figdir
    return paths


def _public(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def _csv(records: list[dict[str, Any]]) -> str:
    rows = [_public(r) for r in records]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ";".join(v) if isinstance(v, list) else v for k, v in r.items()})
    return buf.getvalue()


def _document(records, preset, blocks, over, claims, figs) -> list[tuple]:
    """The report as a list of blocks (`("h1", text)`, `("p", text)`, `("table", headers,
    rows)`, `("img", path, caption)`, `("list", items)`), section by section."""
    return (_intro(records, preset) + _table1(blocks) + _claims_section(claims)
            + _figures(figs) + _overhead(over) + _audit(records) + _defenses(records)
            + _files())


def _intro(records, preset) -> list[tuple]:
    """Title, what was run, how to read the cells, failures and flags."""
    doc: list[tuple] = [("h1", f"robustlab report{': ' + preset['name'] if preset else ''}")]
    seeds = sorted({r["seed"] for r in records})
    intro = [f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from {len(records)} "
             f"evaluations of {len({r['run_dir'] for r in records})} trained models "
             f"(seeds: {', '.join(map(str, seeds))})."]
    if preset:
        intro.append(f"Preset `{preset['name']}`: {preset.get('description', '')}")
        intro.append(f"Sizes used: {preset.get('budget_note') or 'see experiment.json'}; "
                     f"epochs={preset.get('epochs')}, "
                     f"train_size={preset.get('train_size') or 'full'}; paper protocol: "
                     f"batch={preset.get('batch_size')}, lr={preset.get('lr')}.")
        recipes = sorted({r["recipe"] for r in records if r["protocol"] == "recipe"})
        if recipes:
            intro.append(f"Best-recipe runs used the recipe(s) {', '.join(recipes)} "
                         "(docs/methods.md, 'Recipes'; each run's config.json has every "
                         "value).")
    doc.append(("p", " ".join(intro)))
    if len(seeds) == 1:
        doc.append(("p", "**One seed only: cells are single measurements, so no standard "
                         "deviation or confidence interval can be given.**"))
    else:
        doc.append(("p", "Cells: mean ± sample std [95% confidence interval, t-distribution] "
                         "over seeds, in %."))
    protocols = sorted({r["protocol"] for r in records})
    doc.append(("p", "Protocols: " + "; ".join(f"**{p}** = {PROTOCOL_NAMES.get(p, p)}"
                                              for p in protocols)
                + ". Every table block and figure panel names the protocol its runs used."))
    failed = [r for r in records if r["health"] != "ok"]
    if failed:
        doc.append(("p", f"**{len({r['run'] for r in failed})} trained model(s) did not learn** "
                         "(collapsed to near-chance accuracy, non-finite loss, or catastrophic "
                         "overfitting): they are listed under their block, left out of every "
                         "comparison, claim and figure, and are failures of the training "
                         "recipe, not findings."))
    if any(r["flagged"] for r in records):
        doc.append(("p", f"{FLAG} marks numbers of models the gradient-masking audit flagged: "
                         "they likely overstate robustness (see the audit section)."))
    return doc


def _table1(blocks) -> list[tuple]:
    """Table 1, one block per dataset / model / protocol / budget."""
    doc: list[tuple] = []
    doc.append(("h2", "Table 1: clean and adversarial accuracy"))
    for b in blocks:
        cw = f" CW = `{b['cw_attack']}`." if b["cw_attack"] else ""
        doc.append(("p", f"**{b['dataset']} / {b['model']}, {b['protocol']} protocol, budget "
                         f"`{b['label']}`: eps = {b['eps']:.4g} ({b['norm']})**, {b['n']} test "
                         f"images.{cw} Worst case: a sample counts only if it survives every "
                         "attack; gap = clean - worst case; mixed = clean/PGD halves."))
        headers = ["Method", "Seeds"] + [name + " (%)" for _, name in TABLE1_COLUMNS]
        rows = [[row["method"], str(len(row["seeds"]))]
                + [row["cells"][c]["text"] for c, _ in TABLE1_COLUMNS] for row in b["rows"]]
        doc.append(("table", headers, rows))
        if b["failed"]:
            doc.append(("p", "Not compared — these runs did not learn (their numbers are not "
                             "robustness results):"))
            doc.append(("table", ["Run", "Method", "Seed", "Training verdict", "Clean (%)",
                                  "Worst case (%)"],
                        [[f["run"], f["method"], str(f["seed"]), f["health"], _pct(f["clean"]),
                          _pct(f["worst"])] for f in b["failed"]]))
    return doc


def _claims_section(claims) -> list[tuple]:
    """The paper's claims next to the measured numbers."""
    doc: list[tuple] = []
    doc.append(("h2", "Claims check (paper sections 5 and 6.1)"))
    doc.append(("table", ["Claim", "Section", "Criterion used here", "Measured", "Verdict"],
                [[c["claim"], c["section"], c["criterion"], c["measured"],
                  f"**{c['verdict']}**"] for c in claims]))
    return doc


def _figures(figs) -> list[tuple]:
    """Every figure that was drawn, with its caption."""
    doc: list[tuple] = []
    for path, caption in figs:
        if path is not None:
            doc.append(("h2", caption.split(":")[0]))
            doc.append(("img", path, caption))
    return doc


def _overhead(over) -> list[tuple]:
    """Training cost relative to standard training."""
    doc: list[tuple] = []
    doc.append(("h2", "Overhead: training cost relative to standard training"))
    doc.append(("table", ["Dataset", "Method", "Runs", "Train time (s)", "Time/epoch (s)",
                          "Peak memory (MiB)", "Time ratio", "Memory ratio", "Eval time (s)"],
                [[o["dataset"], o["method"], str(o["runs"]), _fmt(o["train_time_s"]["mean"]),
                  _fmt(o["epoch_time_s"]["mean"], ".2f"), _fmt(o["peak_mem_mb"]["mean"], ".0f"),
                  _fmt(o["time_ratio"]["mean"], ".2f"), _fmt(o["mem_ratio"]["mean"], ".2f"),
                  _fmt(o["eval_time_s"]["mean"])] for o in over]))
    doc.append(("p", "Ratios divide time per epoch and peak memory by the standard run of the "
                     "same dataset, model and seed. Peak memory is the process's peak RSS on "
                     "CPU (it includes the dataset and the Python runtime) and the allocator's "
                     "peak on GPU."))
    return doc


def _audit(records) -> list[tuple]:
    """The gradient-masking audit's verdict per run and budget."""
    doc: list[tuple] = []
    doc.append(("h2", "Gradient-masking audit"))
    doc.append(("p", "Checks after Carlini et al. (2019) and Athalye et al. (2018): accuracy "
                     "falls to ~0 at a huge budget, accuracy does not rise with eps, PGD is at "
                     "least as strong as FGSM, more PGD steps/restarts do not help the model, "
                     "black-box attacks (Square, transfer) are not stronger than white-box "
                     "ones, gradients are finite and non-zero, randomness and non-differentiable"
                     " preprocessing are attacked with EOT / BPDA."))
    doc.append(("table", ["Run", "Budget", "eps", "Verdict", "Flagged checks", "Not run"],
                [[a["run"], a["label"], f"{a['eps']:.4g}", a["verdict"], a["reasons"] or "-",
                  a["skipped"] or "-"] for a in audit_rows(records)]))
    return doc


def _defenses(records) -> list[tuple]:
    """Adaptive versus non-adaptive numbers of preprocessing defenses."""
    doc: list[tuple] = []
    defended = [r for r in records if r.get("non_adaptive_worst") is not None]
    if defended:
        doc.append(("h2", "Preprocessing defenses: adaptive versus non-adaptive attacks"))
        doc.append(("p", "The adaptive columns (BPDA through non-differentiable preprocessing, "
                    "EOT over randomness) are the robustness numbers. The non-adaptive columns "
                    "attack the defended model naively; they are shown for comparison only "
                    "and overstate robustness."))
        doc.append(("table", ["Run", "Defense", "eps", "Clean (%)", "PGD, adaptive (%)",
                              "PGD, NON-ADAPTIVE (%)", "Worst case, adaptive (%)",
                              "Worst case, NON-ADAPTIVE (%)"],
                    [[r["run"], r.get("defense") or "-", f"{r['eps']:g}",
                      _pct(r["clean"]), _pct(r["pgd"]), _pct(r["non_adaptive_pgd"]),
                      _pct(r["worst"]), _pct(r["non_adaptive_worst"])] for r in defended]))
    return doc


def _files() -> list[tuple]:
    """What the report folder holds."""
    doc: list[tuple] = []
    doc.append(("h2", "Files"))
    doc.append(("list", ["`results.json`: every number above (schema " + RESULTS_SCHEMA + ")",
                         "`results.csv`: one row per evaluated model and budget",
                         "`runs/*/eval/*.json`: per-sample evaluation results "
                         "(schema robustlab.eval/1, docs/evaluation.md)"]))
    return doc
