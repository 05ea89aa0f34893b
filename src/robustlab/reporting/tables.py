"""Table 1 (accuracy per dataset, budget and method over seeds) and the overhead table, as
data; `render.py` turns them into Markdown / HTML."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from robustlab.common.vocabulary import AUDIT_FLAG, AUDIT_SKIPPED, HEALTH_OK
from robustlab.reporting.collect import method_rank
from robustlab.reporting.stats import summarize

# Table 1's fixed columns around the attack columns (one per evaluated attack, in between).
BEFORE_ATTACKS = (("clean", "Clean"),)
AFTER_ATTACKS = (("worst", "Worst case"), ("gap", "Gap"), ("mixed", "Mixed"))
ATTACK_LABELS = {"fgsm": "FGSM", "pgd": "PGD", "cw-linf": "CW-Linf", "cw-l2": "CW-L2",
                 "autoattack": "AutoAttack", "square": "Square", "apgd-ce": "APGD-CE",
                 "apgd-t": "APGD-T", "fab-t": "FAB-T", "transfer": "Transfer"}
FLAG = "⚠"
# "Best" exceeds the seeds' spread when its margin over the runner-up is larger than the sum
# of the two methods' standard deviations (their mean ± std ranges do not overlap).
SPREAD_RULE = "the margin is larger than the sum of the two methods' standard deviations"
WORST_BELOW_PP = 0.05  # worst case counts as below every attack column by more than this
HYBRID = "hybrid"  # the paper's method (the claims check reads the same rows)


def attack_label(name: str) -> str:
    """An attack's column title (its registered name when not one of the usual ones)."""
    return ATTACK_LABELS.get(name, name)


def pct_cell(values: list[float | None], flagged: bool) -> dict[str, Any]:
    """Summary of accuracies in [0, 1] as percentages: `text` is the compact cell (mean ± std,
    the flag), `hover` the 95% interval over seeds (results.json / .csv have both)."""
    s = summarize([None if v is None else 100 * v for v in values])
    if s.mean is None:
        text, hover = "n/a", "not evaluated"
    elif s.std is None:
        text, hover = f"{s.mean:.1f}", "one seed: no interval"
    else:
        text = f"{s.mean:.1f} ± {s.std:.1f}"
        hover = f"95% CI [{s.ci_low:.1f}, {s.ci_high:.1f}] over {s.n} seeds"
    if flagged and s.mean is not None:
        text += f" {FLAG}"
        hover += "; flagged by the gradient-masking audit"
    return {**s.as_dict(), "text": text, "hover": hover}


PROTOCOL_NAMES = {"paper": "paper protocol (the paper's hyper-parameters for every method)",
                  "recipe": "best recipe (each method's working recipe, same epochs and "
                            "budget warm-up for all)"}


def learned(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of models whose training did not collapse, diverge or overfit
    catastrophically (`health` ok): the only ones compared."""
    return [r for r in records if r.get("health", HEALTH_OK) == HEALTH_OK]


# The threat models' names in the report, in its order (a section each in Table 1).
NORM_NAMES = {"linf": "Linf", "l2": "L2", "l1": "L1", "l0": "L0"}


def norm_rank(norm: str | None) -> int:
    """A threat model's place in the report: Linf, L2, L1, L0, then any other."""
    names = list(NORM_NAMES)
    return names.index(norm) if norm in names else len(names)


def threat_model(norm: str | None, eps: float) -> str:
    """The threat model as a heading names it: "Linf, eps 0.3", "L1, eps 10", "L0, 24
    pixels" (an l0 budget counts pixels)."""
    if norm == "l0":
        return f"L0, {eps:g} pixel{'' if eps == 1 else 's'}"
    return f"{NORM_NAMES.get(norm or 'linf', norm)}, eps {eps:.4g}"


def norms_of(records: list[dict[str, Any]]) -> list[str]:
    """The threat models' norms the records were evaluated at, in the report's order."""
    return sorted({r.get("norm") or "linf" for r in records}, key=norm_rank)


def groups(records: list[dict[str, Any]]) -> dict[tuple[str, str, str, float], list[dict]]:
    """Records by (dataset, protocol, budget label, eps), ordered by threat model (Linf, L2,
    L1, L0), then dataset, protocol and eps."""
    out: dict[tuple[str, str, str, float], list[dict]] = defaultdict(list)
    for r in records:
        out[(r["dataset"], r.get("protocol", "paper"), r["label"], r["eps"])].append(r)
    return dict(sorted(out.items(), key=lambda kv: (norm_rank(kv[1][0].get("norm") or "linf"),
                                                    kv[0][0], kv[0][1], kv[0][3])))


def columns(recs: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Table 1's columns for these records: clean, every attack any of them was evaluated
    with (first-seen order), worst case, gap, mixed (those two when any record has them).
    `key` names the row's cell."""
    attacks: list[str] = []
    for r in recs:
        attacks += [a for a in r.get("attacks") or () if a not in attacks]
    after = [(k, t) for k, t in AFTER_ATTACKS if any(r.get(k) is not None for r in recs)]
    return ([{"key": k, "label": t, "kind": k} for k, t in BEFORE_ATTACKS]
            + [{"key": a, "label": attack_label(a), "kind": "attack"} for a in attacks]
            + [{"key": k, "label": t, "kind": k} for k, t in after])


def value(r: dict[str, Any], col: dict[str, str]) -> float | None:
    """A record's accuracy in one Table 1 column (None when that attack was not run)."""
    if col["kind"] == "attack":
        return (r.get("attack_acc") or {}).get(col["key"])
    return r[col["key"]]


def _row(method: str, rs: list[dict[str, Any]], cols: list[dict[str, str]]) -> dict[str, Any]:
    flagged = any(r["flagged"] for r in rs)
    return {"method": method, "role": rs[0].get("role"),
            "seeds": sorted(r["seed"] for r in rs), "flagged": flagged,
            "flags": sorted({f for r in rs for f in r["flags"]}),
            "pgd_conf": summarize([r["pgd_conf"] for r in rs]).mean,
            "cells": {c["key"]: pct_cell([value(r, c) for r in rs], flagged) for c in cols}}


def setup_of(recs: list[dict[str, Any]]) -> dict[str, list]:
    """What the block's runs and evaluations used, each as the sorted distinct values."""
    keys = ("epochs", "n_train", "n", "curve_n", "audit_n", "autoattack_version", "recipe",
            "mixed_attack")
    return {k: sorted({r.get(k) for r in recs if r.get(k) is not None}, key=str) for k in keys}


def table1(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One block per (dataset, protocol, budget): its `columns`, rows per method whose every
    run learned (cells mean ± std, 95% CI in %), `failed` runs, `setup`, `best` and
    `worst_below_all` (methods whose worst case is below every attack column)."""
    blocks = []
    for (dataset, protocol, label, eps), recs in groups(records).items():
        by_method: dict[str, list[dict]] = defaultdict(list)
        failed = [{"run": r["run"], "method": r["method"], "seed": r["seed"],
                   "health": r["health"], "health_note": r.get("health_note"),
                   "clean": r["clean"], "worst": r["worst"]}
                  for r in recs if r.get("health", HEALTH_OK) != HEALTH_OK]
        for r in learned(recs):
            by_method[r["method"]].append(r)
        cols = columns(recs)
        rows = [_row(m, by_method[m], cols) for m in sorted(by_method, key=method_rank)]
        cw = sorted({r["cw_attack"] for r in recs if r["cw_attack"]})
        block = {"dataset": dataset, "protocol": protocol, "label": label, "eps": eps,
                 "failed": failed, "columns": cols, "setup": setup_of(recs),
                 "norm": recs[0]["norm"], "model": recs[0]["model"], "n": recs[0]["n"],
                 "cw_attack": ", ".join(cw) or None, "rows": rows}
        block["best"] = best_method(block)
        block["hybrid"] = hybrid_standing(block)
        block["worst_below_all"] = worst_below_all(block)
        block["below_chance"] = below_chance(block, recs)
        blocks.append(block)
    return blocks


def worst_below_all(block: dict[str, Any]) -> list[str]:
    """Methods whose mean worst case is below every attack column's mean: the per-image
    worst case over attacks (an image counts only if it survives all) is lower than each
    attack alone because different attacks fool different images."""
    keys = [c["key"] for c in block["columns"] if c["kind"] == "attack"]
    out = []
    for row in block["rows"]:
        means = [row["cells"][k]["mean"] for k in keys if row["cells"][k]["mean"] is not None]
        worst = row["cells"]["worst"]["mean"]
        if means and worst is not None and worst < min(means) - WORST_BELOW_PP:
            out.append(row["method"])
    return out


def below_chance(block: dict[str, Any], recs: list[dict[str, Any]]) -> list[str]:
    """Compared methods whose mean clean accuracy is below chance (1 / classes): they did not
    learn even if training's verdict and the audit missed it (their gap means nothing)."""
    classes = next((r["num_classes"] for r in recs if r.get("num_classes")), None)
    if not classes:
        return []
    return [row["method"] for row in block["rows"]
            if row["cells"]["clean"]["mean"] is not None
            and row["cells"]["clean"]["mean"] < 100 / classes]


def best_method(block: dict[str, Any]) -> dict[str, Any] | None:
    """The method with the highest mean worst-case accuracy among rows the audit did not
    flag, its margin over the runner-up (percentage points) and whether the margin exceeds
    the seeds' spread (`SPREAD_RULE`; None when either has one seed)."""
    rows = [r for r in block["rows"]
            if not r["flagged"] and r["cells"]["worst"]["mean"] is not None]
    if not rows:
        return None
    rows.sort(key=lambda r: -r["cells"]["worst"]["mean"])
    best = rows[0]["cells"]["worst"]
    out = {"method": rows[0]["method"], "worst": best["mean"], "runner_up": None,
           "margin": None, "exceeds_spread": None,
           "skipped_flagged": [r["method"] for r in block["rows"] if r["flagged"]]}
    if len(rows) > 1:
        second = rows[1]["cells"]["worst"]
        out.update(runner_up=rows[1]["method"], margin=best["mean"] - second["mean"])
        if best["std"] is not None and second["std"] is not None:
            out["exceeds_spread"] = out["margin"] > best["std"] + second["std"]
    return out


def hybrid_standing(block: dict[str, Any]) -> dict[str, Any] | None:
    """Where the paper's hybrid stands in a block, ranked like `best_method` (mean worst case,
    unflagged rows): `rank` of `of`, the best `other` method and the `margin` (hybrid minus
    it, pp; negative: below), `exceeds_spread` (`SPREAD_RULE`, None with one seed). `status`:
    "ranked", "flagged" (the audit flagged it: not ranked) or "not compared" (did not learn);
    None when the block has no hybrid run."""
    hyb = next((r for r in block["rows"] if r["method"] == HYBRID), None)
    if hyb is None:
        failed = any(f["method"] == HYBRID for f in block["failed"])
        return {"status": "not compared"} if failed else None
    rows = sorted((r for r in block["rows"]
                   if not r["flagged"] and r["cells"]["worst"]["mean"] is not None),
                  key=lambda r: -r["cells"]["worst"]["mean"])
    if hyb not in rows:
        return {"status": "flagged"}
    out = {"status": "ranked", "rank": rows.index(hyb) + 1, "of": len(rows), "other": None,
           "margin": None, "exceeds_spread": None}
    others = [r for r in rows if r is not hyb]
    if others:
        h, o = hyb["cells"]["worst"], others[0]["cells"]["worst"]
        out.update(other=others[0]["method"], margin=h["mean"] - o["mean"])
        if h["std"] is not None and o["std"] is not None:
            out["exceeds_spread"] = abs(out["margin"]) > h["std"] + o["std"]
    return out


def overhead(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training cost per dataset and method (each run counted once), with the ratio of time
    per epoch and of peak memory to the `standard` run of the same dataset/model/seed."""
    runs = {r["run_dir"]: r for r in records}.values()
    std = {(r["dataset"], r["model"], r["seed"]): r for r in runs if r["method"] == "standard"}
    grouped: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        grouped[(r["dataset"], r["method"])].append(r)
    rows = []
    for (dataset, method), rs in sorted(grouped.items(),
                                        key=lambda kv: (kv[0][0], method_rank(kv[0][1]))):
        ratios, mem_ratios = [], []
        for r in rs:
            base = std.get((r["dataset"], r["model"], r["seed"]))
            if base and base.get("epoch_time_s") and r.get("epoch_time_s"):
                ratios.append(r["epoch_time_s"] / base["epoch_time_s"])
            if base and base.get("peak_mem_mb") and r.get("peak_mem_mb"):
                mem_ratios.append(r["peak_mem_mb"] / base["peak_mem_mb"])
        rows.append({
            "dataset": dataset, "method": method, "runs": len(rs),
            "train_time_s": summarize([r.get("train_time_s") for r in rs]).as_dict(),
            "epoch_time_s": summarize([r.get("epoch_time_s") for r in rs]).as_dict(),
            "peak_mem_mb": summarize([r.get("peak_mem_mb") for r in rs]).as_dict(),
            "time_ratio": summarize(ratios).as_dict(),
            "mem_ratio": summarize(mem_ratios).as_dict(),
            "eval_time_s": summarize([r.get("eval_time_s") for r in records
                                      if r["dataset"] == dataset
                                      and r["method"] == method]).as_dict(),
        })
    return rows


def audit_check_names(records: list[dict[str, Any]]) -> list[str]:
    """Every audit check any compared evaluation holds, in first-seen order."""
    names: list[str] = []
    for r in learned(records):
        names += [c["name"] for c in r["_audit"] if c["name"] not in names]
    return names


def audit_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per evaluated model: its audit verdict, every check as {status, reason}
    (whatever checks the eval file holds), the reasons of flagged checks and the checks not
    run. A model that did not learn is NOT COMPARED, whatever its checks say."""
    rows = []
    for r in records:
        base = {"run": r["run"], "label": r["label"], "eps": r["eps"], "method": r["method"],
                "seed": r["seed"]}
        if r.get("health", HEALTH_OK) != HEALTH_OK:
            rows.append({**base, "verdict": f"NOT COMPARED ({r['health']})", "checks": {},
                         "reasons": "training did not learn", "skipped": ""})
            continue
        checks = {c["name"]: {"status": c["status"], "reason": c.get("reason", "")}
                  for c in r["_audit"]}
        flagged = [c for c in r["_audit"] if c["status"] == AUDIT_FLAG]
        skipped = [c["name"] for c in r["_audit"] if c["status"] == AUDIT_SKIPPED]
        rows.append({**base, "verdict": "FLAGGED" if r["flagged"] else "pass",
                     "checks": checks,
                     "reasons": "; ".join(f"{c['name']}: {c['reason']}" for c in flagged),
                     "skipped": ", ".join(skipped)})
    return rows
