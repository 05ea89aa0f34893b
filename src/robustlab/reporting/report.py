"""`write_report(DIR)`: report.md, report.html, figures/*.png, results.json, results.csv."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from robustlab.common.files import (
    FileFormatError,
    atomic_write_text,
    read_json,
    replace_refusal,
)
from robustlab.common.vocabulary import (
    AUDIT_FLAG,
    AUDIT_PASS,
    AUDIT_SKIPPED,
    HEALTH_OK,
    OVERFIT_GAP,
    RESULTS_SCHEMA,
    WEIGHTS_AVERAGED,
)
from robustlab.reporting import figures
from robustlab.reporting.claims import PAPER_PRESETS, check_claims, claims_apply
from robustlab.reporting.collect import load_records
from robustlab.reporting.patches import patch_section, split_patch_records
from robustlab.reporting.render import to_html, to_markdown
from robustlab.reporting.studies import study_sections
from robustlab.reporting.tables import (
    FLAG,
    NORM_NAMES,
    PROTOCOL_NAMES,
    SPREAD_RULE,
    attack_label,
    audit_check_names,
    audit_rows,
    groups,
    norms_of,
    overhead,
    setup_of,
    table1,
    threat_model,
)


def _fmt(value: float | None, fmt: str = ".1f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def write_report(root: str | Path) -> dict[str, Path]:
    """Read every result under `root`, write the report files into `root`; return their paths
    (keys md, html, json, csv, figures)."""
    root = Path(root)
    records, experiment = load_records(root)
    check_outputs(root)  # before any write: a user's report.md in DIR is not replaced
    records, patch_records = split_patch_records(records)  # shown apart: another threat model
    preset = (experiment or {}).get("preset") or {}
    headline = preset.get("headline") or records[0]["dataset"]
    blocks = table1(records)
    over = overhead(records)
    with_claims = claims_apply(preset.get("name"))
    claims = check_claims(blocks, over, headline) if with_claims else []
    figdir = root / "figures"
    figs = figures.draw_all(records, figdir, headline)
    not_compared = {r["run"]: r["health"] for r in records
                    if r.get("health", HEALTH_OK) != HEALTH_OK}
    studies, study_figs = study_sections(root, experiment, figdir,  # transfer, certification
                                         not_compared)
    studies = patch_section(patch_records) + studies
    doc = _document(records, preset, blocks, over, claims, figs, studies)
    paths = {
        "md": atomic_write_text(root / "report.md", to_markdown(doc, root)),
        "html": atomic_write_text(root / "report.html", to_html(doc, _title(preset))),
        "json": atomic_write_text(root / "results.json", json.dumps(
            {"schema": RESULTS_SCHEMA, "preset": preset.get("name"), "headline": headline,
             "records": [_public(r) for r in records],
             "patch_records": [_public(r) for r in patch_records], "table1": blocks,
             "overhead": over,
             "claims_checked": with_claims, "claims": claims,
             "figures": [str(p.relative_to(root)) for p, _ in figs + study_figs if p]},
            indent=2, sort_keys=True) + "\n"),
        "csv": atomic_write_text(root / "results.csv", results_csv(records, blocks)),
    }
    paths["figures"] = figdir
    return paths


def check_outputs(root: Path) -> None:
    """The report replaces report.md/.html and results.json/.csv in `root` only if robustlab
    wrote them (recognised by their first line, title or schema); a file of the same name that
    is someone else's is refused with one line before anything is written."""
    for name, is_ours in _OUTPUTS.items():
        refusal = replace_refusal(root / name, is_ours)
        if refusal is not None:
            raise FileFormatError(f"report: {refusal}")


def _is_results_json(path: Path) -> bool:
    data = read_json(path)
    return isinstance(data, dict) and str(data.get("schema")).startswith(
        RESULTS_SCHEMA.split("/")[0] + "/")  # any version of our results.json


_OUTPUTS = {
    "report.md": lambda p: p.read_text(encoding="utf-8").startswith("# robustlab report"),
    "report.html": lambda p: "<title>robustlab report" in p.read_text(encoding="utf-8")[:4096],
    "results.json": _is_results_json,
    "results.csv": lambda p: p.read_text(encoding="utf-8").startswith("run,run_dir,"),
}


def _title(preset: dict[str, Any]) -> str:
    return f"robustlab report{': ' + preset['name'] if preset else ''}"


def _public(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def _csv_row(r: dict[str, Any], row: dict[str, Any] | None) -> dict[str, Any]:
    """One record as CSV cells: lists joined by `;`, each attack's accuracy as `acc_NAME`,
    and the 95% interval over seeds of the record's Table 1 row (`ci95_low_COLUMN`, ...)."""
    out: dict[str, Any] = {}
    for k, v in _public(r).items():
        if k == "attack_acc":
            out.update({f"acc_{name}": acc for name, acc in v.items()})
        elif isinstance(v, dict):
            out[k] = json.dumps(v, sort_keys=True)
        else:
            out[k] = ";".join(map(str, v)) if isinstance(v, list) else v
    for key, cell in (row or {}).get("cells", {}).items():
        low, high = cell["ci95"] or (None, None)
        out[f"ci95_low_{key}"], out[f"ci95_high_{key}"] = low, high
    return out


def results_csv(records: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> str:
    """results.csv: one row per evaluated model and budget; a column per attack any of them
    ran (empty where not run)."""
    rows_of = {(b["dataset"], b["protocol"], b["label"], b["eps"], row["method"]): row
               for b in blocks for row in b["rows"]}
    rows = [_csv_row(r, rows_of.get((r["dataset"], r.get("protocol", "paper"), r["label"],
                                     r["eps"], r["method"])) if r["health"] == HEALTH_OK else None)
            for r in records]
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _document(records, preset, blocks, over, claims, figs, studies=()) -> list[tuple]:
    """The report as a list of blocks (render.py), section by section: the summary first;
    `studies`: the transferability and certification sections (reporting/studies.py)."""
    return ([("h1", _title(preset))] + _summary(records, preset, blocks, claims)
            + [("toc",)] + _table1(records, blocks) + _claims_section(claims)
            + _figures(figs) + _overhead(over) + _audit(records) + _defenses(records)
            + list(studies) + _files())


def _ran(records, preset) -> str:
    """One sentence: what was evaluated, how many models and seeds."""
    seeds = sorted({r["seed"] for r in records})
    models = sorted({f"{r['dataset']} / {r['model']}" for r in records})
    what = (f"Preset `{preset['name']}`" if preset
            else "User runs (no experiment.json, so no preset)")
    return (f"{what}: {len(records)} evaluations of {len({r['run_dir'] for r in records})} "
            f"trained models ({len({r['method'] for r in records})} methods; "
            f"{', '.join(models)}; seeds {', '.join(map(str, seeds))}), generated "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC.")


def _summary(records, preset, blocks, claims) -> list[tuple]:
    """What a reader sees first: the protocol, the best method per block, every claim's
    verdict, runs that failed or were flagged."""
    doc: list[tuple] = [("h2", "Summary"), ("p", _ran(records, preset))]
    if preset:
        doc.append(("note", f"{preset.get('description', '')} Sizes: "
                         f"{preset.get('budget_note') or 'see experiment.json'}."))
    doc.append(("list", [protocol_line(p, s) for p, s in _protocols(records)]))
    doc.append(("p", "**Best method per dataset and budget** (highest worst-case accuracy "
                     "among the models the audit did not flag; more than the seeds' spread "
                     f"when {SPREAD_RULE}):"))
    named = _named(records)
    doc.append(("list", [best_line(b, named=named) for b in blocks]))
    if any(b.get("hybrid") for b in blocks):
        doc.append(("p", hybrid_sentence(blocks, named=named)))
    if claims:
        doc.append(("p", "**The paper's claims** (details in the claims section):"))
        doc.append(("list", [f"**{c['verdict']}**: {c['claim']} ({c['section']})"
                             for c in claims]))
    else:
        doc.append(("p", "No claims check: it is part of the reports of the paper presets ("
                         + ", ".join(f"`{p}`" for p in PAPER_PRESETS) + ") only."))
    return doc + _warnings(records)


def _protocols(records) -> list[tuple[str, dict[str, list]]]:
    """Each protocol with the setup of all its runs (every block states its own again)."""
    names = sorted({r.get("protocol", "paper") for r in records})
    return [(p, setup_of([r for r in records if r.get("protocol", "paper") == p]))
            for p in names]


def _join(values: list, unit: str = "") -> str:
    return " / ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in values) + unit


def protocol_line(protocol: str, s: dict[str, list]) -> str:
    """A protocol as the runs used it (`setup_of`): its name, epochs, training-set size,
    test images (and the eps curve's and the audit's subsets), AutoAttack's version."""
    parts = [f"**{PROTOCOL_NAMES.get(protocol, protocol)}**"]
    if s["recipe"] and protocol == "recipe":
        parts.append(f"recipe {_join(s['recipe'])}")
    parts.append(f"{_join(s['epochs'])} epoch{'' if s['epochs'] == [1] else 's'}"
                 if s["epochs"] else "epochs not recorded")
    parts.append(f"training set {_join(s['n_train'], ' images')}" if s["n_train"]
                 else "training-set size not recorded")
    sub = [f"Figure 3's eps curve on the first {_join(s['curve_n'])}" if s["curve_n"]
           and s["curve_n"] != s["n"] else "",
           f"the audit on the first {_join(s['audit_n'])}" if s["audit_n"] else ""]
    sub = [x for x in sub if x]
    parts.append(f"{_join(s['n'])} test images" + (f" ({', '.join(sub)})" if sub else ""))
    if s["autoattack_version"]:
        parts.append(f"AutoAttack {_join(s['autoattack_version'])}")
    return "; ".join(parts)


def _named(records) -> bool:
    """Whether the report names each block's threat model ("L1, eps 10", "L0, 24 pixels"):
    unless every evaluation is at linf (a Linf report's headings say "eps = 0.3 (linf)")."""
    return norms_of(records) != ["linf"]


def _budget(b: dict[str, Any], named: bool) -> str:
    """`eps 0.3`, or, `named`, the block's threat model (`L1, eps 10`)."""
    return threat_model(b.get("norm"), b["eps"]) if named else f"eps {b['eps']:.4g}"


def best_line(b: dict[str, Any], *, named: bool = False) -> str:
    """One block's best method, its margin and whether it exceeds the seeds' spread."""
    where = f"{b['dataset']} / {b['model']}, {b['protocol']} protocol, {_budget(b, named)}"
    best = b["best"]
    if best is None:
        return f"{where}: no compared, unflagged model"
    text = f"{where}: **{best['method']}**, worst case {best['worst']:.1f} %"
    if best["runner_up"] is None:
        return text + " (the only compared method)"
    text += f", {best['margin']:.1f} pp above {best['runner_up']}"
    if best["exceeds_spread"] is None:
        return text + " (one seed: the seeds' spread is unknown)"
    return text + (" — more than the seeds' spread" if best["exceeds_spread"]
                   else " — within the seeds' spread")


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _standing(s: dict[str, Any]) -> str:
    """`2nd of 9, 0.4 pp below trades (one seed: the seeds' spread is unknown)`."""
    if s["status"] == "flagged":
        return "flagged by the audit, not ranked"
    if s["status"] == "not compared":
        return "not compared (did not learn)"
    text = f"{_ordinal(s['rank'])} of {s['of']}"
    if s["other"] is None:
        return text + " (no other compared method)"
    side = "above" if s["margin"] >= 0 else "below"
    text += f", {abs(s['margin']):.1f} pp {side} {s['other']}"
    if s["exceeds_spread"] is None:
        return text + " (one seed: the seeds' spread is unknown)"
    return text + (" — more than the seeds' spread" if s["exceeds_spread"]
                   else " — within the seeds' spread")


def hybrid_sentence(blocks: list[dict[str, Any]], *, named: bool = False) -> str:
    """One sentence: the paper's hybrid's rank by worst case in each block that ran it and
    its margin over (or under) the best other method, with the seeds' spread."""
    parts = [f"{b['dataset']} {b['protocol']} {_budget(b, named)}: {_standing(b['hybrid'])}"
             for b in blocks if b.get("hybrid")]
    return ("**Where the paper's hybrid stands** (`hybrid`, ranked by worst-case accuracy "
            "among the compared methods the audit did not flag; margin to the best other "
            "one): " + "; ".join(parts) + ".")


def _warnings(records) -> list[tuple]:
    """Runs that did not learn and models the audit flagged."""
    doc: list[tuple] = []
    failed = [r for r in records if r["health"] != HEALTH_OK]
    if failed:
        doc.append(("p", f"**{len({r['run'] for r in failed})} trained model(s) did not learn** "
                         "(collapsed to near-chance accuracy, non-finite loss, or catastrophic "
                         "overfitting): they are listed under their block, left out of every "
                         "comparison, claim and figure, and are failures of the training "
                         "recipe, not findings. Catastrophic overfitting is read from "
                         "training's validation guard and, for every adversarially trained "
                         "run, from its own evaluation: test FGSM accuracy more than "
                         f"{100 * OVERFIT_GAP:.0f} points above PGD accuracy at the training "
                         "eps."))
    if any(r["flagged"] for r in records):
        doc.append(("p", f"{FLAG} marks numbers of models the gradient-masking audit flagged: "
                         "they likely overstate robustness (see the audit section)."))
    return doc


def _cells_legend(records) -> tuple:
    if len({r["seed"] for r in records}) == 1:
        return ("p", "**One seed only: cells are single measurements, so no standard "
                     "deviation or confidence interval can be given.** Accuracy in %.")
    return ("p", "Cells: accuracy in %, mean ± sample std over seeds; the 95% confidence "
                 "interval (t-distribution) is the cell's tooltip in report.html and in "
                 "results.csv (`ci95_low_*`, `ci95_high_*`) and results.json.")


def _weights_note(records) -> list[tuple]:
    """Which weights the rows evaluated, when any run averaged its weights (EMA / SWA): the
    averaged ones are evaluate's default; every other row is the last iterate."""
    runs: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r.get("weights") == WEIGHTS_AVERAGED:
            runs.setdefault((r["method"], r["averaging"] or "?"), set()).add(r["run_dir"])
    if not runs:
        return []
    which = "; ".join(f"{m}: {a.upper()}, {len(d)} run{'s' if len(d) > 1 else ''}"
                      for (m, a), d in sorted(runs.items()))
    return [("note", "Weights: the runs trained with weight averaging are evaluated with "
                     f"their averaged weights ({which}); every other row with the last "
                     "iterate (the `weights` column of results.csv).")]


def _table1(records, blocks) -> list[tuple]:
    """Table 1, one block per dataset / model / protocol / budget, with the columns its
    evaluations ran; with several threat models, one section each (`_threat_model_sections`)."""
    norms = norms_of(records)
    if len(norms) > 1:
        return _threat_model_sections(records, blocks, norms)
    doc: list[tuple] = [("h2", "Table 1: clean and adversarial accuracy"),
                        _cells_legend(records), *_weights_note(records)]
    for b in blocks:
        doc += _table1_block(b, named=_named(records))
    return doc


def _threat_model_sections(records, blocks, norms: list[str]) -> list[tuple]:
    """Table 1 of an experiment evaluated at several threat models: a section per norm
    ("Table 1, L1: ..."), its blocks headed by the threat model ("L1, eps 10: mnist / ..."),
    each with the columns of the attacks run at it."""
    doc: list[tuple] = []
    for i, norm in enumerate(norms):
        doc.append(("h2", f"Table 1, {NORM_NAMES.get(norm, norm)}: clean and adversarial "
                          "accuracy"))
        if i == 0:
            doc += [_cells_legend(records), *_weights_note(records)]
        for b in (b for b in blocks if b["norm"] == norm):
            doc += _table1_block(b, named=True)
    return doc


def block_where(b: dict[str, Any], *, named: bool) -> str:
    """A block's heading: `mnist / lenet5, paper protocol, budget `standard`: eps = 0.3
    (linf)`, or, `named`, `L1, eps 10: mnist / lenet5, recipe protocol, budget `l1``."""
    where = f"{b['dataset']} / {b['model']}, {b['protocol']} protocol, budget `{b['label']}`"
    if named:
        return f"{threat_model(b['norm'], b['eps'])}: {where}"
    return f"{where}: eps = {b['eps']:.4g} ({b['norm']})"


def _table1_block(b: dict[str, Any], *, named: bool) -> list[tuple]:
    """One Table 1 block: its heading, protocol, table, note and runs not compared."""
    doc: list[tuple] = [("h3", block_where(b, named=named))]
    doc.append(("note", "Protocol: " + protocol_line(b["protocol"], b["setup"]) + "."))
    headers = ["Method", "Seeds"] + [c["label"] + " (%)" for c in b["columns"]]
    rows = [[row["method"], str(len(row["seeds"]))]
            + [row["cells"][c["key"]] for c in b["columns"]] for row in b["rows"]]
    doc.append(("table", headers, rows))
    doc.append(("note", _block_note(b)))
    return doc + _failed(b)


def _block_note(b: dict[str, Any]) -> str:
    """How to read a block: worst case, gap, mixed, and why worst case may be below every
    attack column."""
    attacks = [c["label"] for c in b["columns"] if c["kind"] == "attack"]
    mixed = " / ".join(attack_label(a) for a in b["setup"]["mixed_attack"]) or "adversarial"
    text = (f"Worst case: an image counts only if it survives every attack ("
            f"{', '.join(attacks)}), so it is at most each attack's column. Gap = clean - "
            f"worst case; mixed = accuracy on a test set of clean and {mixed} halves.")
    if b["worst_below_all"]:
        text += (f" For {', '.join(b['worst_below_all'])} it is below every attack column: "
                 "different attacks fool different images, so the per-image worst case over "
                 "attacks is lower than any one attack alone.")
    if b["below_chance"]:
        text += (f" **{', '.join(b['below_chance'])}: clean accuracy below chance** — the "
                 "model did not learn, whatever its training verdict and audit say; its gap "
                 "and robustness numbers are no result.")
    return text


def _failed(b: dict[str, Any]) -> list[tuple]:
    if not b["failed"]:
        return []
    return [("p", "Not compared — these runs did not learn (their numbers are not "
                  "robustness results):"),
            ("table", ["Run", "Method", "Seed", "Verdict", "Clean (%)", "Worst case (%)"],
             [[f["run"], f["method"], str(f["seed"]), _verdict(f), _pct(f["clean"]),
               _pct(f["worst"])] for f in b["failed"]])]


def _verdict(failed: dict[str, Any]) -> str:
    """The training verdict, or the test-set finding that overrode it (reporting/overfit.py)."""
    note = failed.get("health_note")
    return f"{failed['health']}: {note}" if note else f"{failed['health']} (training)"


def _claims_section(claims) -> list[tuple]:
    """The paper's claims next to the measured numbers (paper presets only: none else)."""
    if not claims:
        return []
    return [("h2", "Claims check (paper sections 5 and 6.1)"),
            ("table", ["Claim", "Section", "Verdict", "Criterion used here", "Measured"],
             [[c["claim"], c["section"], f"**{c['verdict']}**", c["criterion"], c["measured"]]
              for c in claims])]


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


AUDIT_MARKS = {AUDIT_PASS: "✓", AUDIT_FLAG: f"{FLAG} flag", AUDIT_SKIPPED: "not run"}


def _audit(records) -> list[tuple]:
    """The gradient-masking audit, one table per dataset / protocol / budget: every check of
    every model (whatever checks the eval files hold), its reason as the cell's tooltip,
    then the flagged checks' reasons."""
    names = audit_check_names(records)
    doc: list[tuple] = [("h2", "Gradient-masking audit")]
    doc.append(("p", "Checks after Carlini et al. (2019) and Athalye et al. (2018), run by "
                     "`robustlab evaluate` on the first test images (docs/evaluation.md "
                     "lists each check and its threshold). One column per check: ✓ passed, "
                     f"{FLAG} flagged, not run; in report.html each cell's tooltip is the "
                     "check's reason with its numbers and each method's is its run folder. "
                     "A model that did not learn is NOT COMPARED."))
    rows = []
    named = _named(records)
    for (dataset, protocol, label, eps), recs in groups(records).items():
        where = f"{dataset}, {protocol} protocol, budget `{label}`"
        doc.append(("p", f"**{threat_model(recs[0]['norm'], eps)}: {where}**" if named
                    else f"**{where} (eps = {eps:.4g})**"))
        off = {r["_audit_off"] for r in recs if r.get("_audit_off")}
        if off and all(r.get("_audit_off") for r in recs):  # not run at this threat model
            doc.append(("p", "Not run: " + "; ".join(sorted(off)) + "."))
            continue
        block = audit_rows(recs)
        rows += block
        doc.append(("table", ["Method", "Seed", "Verdict"] + [n.replace("_", " ")
                                                              for n in names],
                    [[{"text": a["method"], "hover": a["run"]}, str(a["seed"]), a["verdict"]]
                     + [_audit_cell(a["checks"].get(n)) for n in names] for a in block]))
    return doc + _audit_flags(rows)


def _audit_cell(check: dict[str, str] | None) -> dict[str, str] | str:
    if check is None:
        return "-"
    return {"text": AUDIT_MARKS.get(check["status"], check["status"]),
            "hover": check["reason"]}


def _audit_flags(rows: list[dict[str, Any]]) -> list[tuple]:
    flagged = [a for a in rows if a["verdict"] == "FLAGGED" or any(
        c["status"] == AUDIT_FLAG for c in a["checks"].values())]
    if not flagged:
        return [("p", "No compared model was flagged by any check that ran.")]
    return [("p", "Flagged checks:"),
            ("table", ["Run", "Budget", "Reasons"],
             [[a["run"], a["label"], a["reasons"]] for a in flagged])]


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
                         "`results.csv`: one row per evaluated model and budget (an "
                         "`acc_NAME` column per attack, the 95% intervals over seeds as "
                         "`ci95_low_*` / `ci95_high_*`)",
                         "`runs/*/eval/*.json`: per-sample evaluation results "
                         "(schema robustlab.eval/1, docs/evaluation.md)"]))
    return doc
