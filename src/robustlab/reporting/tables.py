"""Table 1 (accuracy per dataset, budget and method over seeds) and the overhead table, as
data; `render.py` turns them into Markdown / HTML."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from robustlab.reporting.collect import method_rank
from robustlab.reporting.stats import summarize

TABLE1_COLUMNS = (("clean", "Clean"), ("fgsm", "FGSM"), ("pgd", "PGD"), ("cw", "CW"),
                  ("autoattack", "AutoAttack"), ("worst", "Worst case"), ("gap", "Gap"),
                  ("mixed", "Mixed"))
FLAG = "⚠"


def pct_cell(values: list[float | None], flagged: bool) -> dict[str, Any]:
    """Summary of accuracies in [0, 1] as percentages, plus its display text."""
    s = summarize([None if v is None else 100 * v for v in values])
    if s.mean is None:
        text = "n/a"
    elif s.std is None:
        text = f"{s.mean:.1f}"
    else:
        text = f"{s.mean:.1f} ± {s.std:.1f} [{s.ci_low:.1f}, {s.ci_high:.1f}]"
    if flagged and s.mean is not None:
        text += f" {FLAG}"
    return {**s.as_dict(), "text": text}


PROTOCOL_NAMES = {"paper": "paper protocol (the paper's hyper-parameters for every method)",
                  "recipe": "best recipe (each method's working recipe, same epochs and "
                            "budget warm-up for all)"}


def learned(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of models whose training did not collapse, diverge or overfit
    catastrophically (`health` ok): the only ones compared."""
    return [r for r in records if r.get("health", "ok") == "ok"]


def groups(records: list[dict[str, Any]]) -> dict[tuple[str, str, str, float], list[dict]]:
    """Records by (dataset, protocol, budget label, eps)."""
    out: dict[tuple[str, str, str, float], list[dict]] = defaultdict(list)
    for r in records:
        out[(r["dataset"], r.get("protocol", "paper"), r["label"], r["eps"])].append(r)
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][3])))


def table1(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One block per (dataset, protocol, budget): rows per method whose every run learned,
    cells mean ± std [95% CI] in %; runs that did not learn are listed in `failed`."""
    blocks = []
    for (dataset, protocol, label, eps), recs in groups(records).items():
        by_method: dict[str, list[dict]] = defaultdict(list)
        failed = [{"run": r["run"], "method": r["method"], "seed": r["seed"],
                   "health": r["health"], "clean": r["clean"], "worst": r["worst"]}
                  for r in recs if r.get("health", "ok") != "ok"]
        for r in learned(recs):
            by_method[r["method"]].append(r)
        cw = sorted({r["cw_attack"] for r in recs if r["cw_attack"]})
        rows = []
        for method in sorted(by_method, key=method_rank):
            rs = by_method[method]
            flagged = any(r["flagged"] for r in rs)
            rows.append({"method": method, "role": rs[0].get("role"),
                         "seeds": sorted(r["seed"] for r in rs), "flagged": flagged,
                         "flags": sorted({f for r in rs for f in r["flags"]}),
                         "pgd_conf": summarize([r["pgd_conf"] for r in rs]).mean,
                         "cells": {c: pct_cell([r[c] for r in rs], flagged)
                                   for c, _ in TABLE1_COLUMNS}})
        blocks.append({"dataset": dataset, "protocol": protocol, "label": label, "eps": eps,
                       "failed": failed,
                       "norm": recs[0]["norm"], "model": recs[0]["model"], "n": recs[0]["n"],
                       "cw_attack": ", ".join(cw) or None, "rows": rows})
    return blocks


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


def audit_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per evaluated model: its audit verdict and the reasons of flagged checks."""
    rows = []
    for r in records:
        if r.get("health", "ok") != "ok":
            rows.append({"run": r["run"], "label": r["label"], "eps": r["eps"],
                         "verdict": f"NOT COMPARED ({r['health']})",
                         "reasons": "training did not learn", "skipped": ""})
            continue
        flagged = [c for c in r["_audit"] if c["status"] == "flag"]
        skipped = [c["name"] for c in r["_audit"] if c["status"] == "skipped"]
        rows.append({"run": r["run"], "label": r["label"], "eps": r["eps"],
                     "verdict": "FLAGGED" if r["flagged"] else "pass",
                     "reasons": "; ".join(f"{c['name']}: {c['reason']}" for c in flagged),
                     "skipped": ", ".join(skipped)})
    return rows
