"""The "claims check": each claim of the paper's sections 5 and 6.1 next to the measured numbers,
with a verdict "supported" / "not supported" / "not measured here".

The paper's baselines (section 4.5) are standard adversarial training (`pgd-at`) and robust
optimisation (`trades`); the criteria below are stated in every claim's `criterion`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SUPPORTED, NOT_SUPPORTED, NOT_MEASURED = "supported", "not supported", "not measured here"
BASELINES = ("pgd-at", "trades")
# The presets made to reproduce the paper's comparison; only their reports check its claims
# (a user's runs, the CI `smoke` check and the README's `quick` job get no claims section).
PAPER_PRESETS = ("paper", "paper-cpu")


def claims_apply(preset_name: str | None) -> bool:
    """Whether a report of this preset (None: no experiment.json) has a claims section."""
    return preset_name in PAPER_PRESETS


def _attack_keys(block: dict[str, Any]) -> list[str]:
    """The block's attack columns (every attack its evaluations ran)."""
    return [c["key"] for c in block["columns"] if c["kind"] == "attack"]


def _means(block: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    return {row["method"]: {c: v["mean"] for c, v in row["cells"].items()}
            for row in block["rows"]}


def _claim(cid: str, section: str, claim: str, criterion: str, verdict: str,
           measured: str) -> dict[str, str]:
    return {"id": cid, "section": section, "claim": claim, "criterion": criterion,
            "verdict": verdict, "measured": measured}


def _where(b: dict[str, Any]) -> str:
    return f"{b['dataset']} eps={b['eps']:.4g} ({b.get('protocol', 'paper')} protocol)"


# Each claim's threshold, named next to its text below.
ADV_GAIN_PP = 25.0  # adv-accuracy: mean gain over each baseline, percentage points
TIME_RATIO_MAX = 1.5  # time: hybrid seconds per epoch / standard's
MEMORY_RATIO_MAX = 2.0  # memory: hybrid peak memory / standard's
CLEAN_DROP_PP = 2.0  # clean: hybrid at most this many points below standard
# Claims whose numbers come from trained models (they carry the audit's flags).
MODEL_CLAIMS = ("adv-accuracy", "gap", "pgd-best", "confidence", "clean")


@dataclass
class ClaimInputs:
    """The report's accuracy blocks (`have`: those with a hybrid row), the overhead rows and
    the headline dataset."""

    blocks: list[dict[str, Any]]
    have: list[dict[str, Any]]
    overhead: list[dict[str, Any]]
    headline: str | None


def _verdict(measured_any: bool, ok: bool) -> str:
    return (SUPPORTED if ok else NOT_SUPPORTED) if measured_any else NOT_MEASURED


def check_claims(blocks: list[dict[str, Any]], overhead: list[dict[str, Any]],
                 headline: str | None) -> list[dict[str, str]]:
    """Every claim of `CLAIMS`, in order; a flagged model's numbers carry the flag."""
    inputs = ClaimInputs(blocks, [b for b in blocks if "hybrid" in _means(b)], overhead,
                         headline)
    claims = [claim(inputs) for claim in CLAIMS]
    flagged = sorted({f"{row['method']} ({_where(b)})" for b in blocks for row in b["rows"]
                      if row["flagged"] and row["method"] in ("hybrid", "standard") + BASELINES})
    if flagged:
        for c in claims:
            if c["id"] in MODEL_CLAIMS:
                c["measured"] += f" ⚠ flagged by the gradient-masking audit: {', '.join(flagged)}"
    return claims


def adv_accuracy_claim(a: ClaimInputs) -> dict[str, str]:
    parts, ok = [], True
    for b in a.have:
        m = _means(b)
        for base in (x for x in BASELINES if x in m):
            diffs = [m["hybrid"][c] - m[base][c] for c in _attack_keys(b)
                     if m["hybrid"].get(c) is not None and m[base].get(c) is not None]
            if diffs:
                d = sum(diffs) / len(diffs)
                ok &= d >= ADV_GAIN_PP
                parts.append(f"{_where(b)}: {d:+.1f} pp vs {base}")
    return _claim(
        "adv-accuracy", "5.1", "The hybrid improves adversarial accuracy by 25-30% on average "
        "over the baselines.", "mean over attacks of (hybrid - baseline) adversarial accuracy "
        f">= {ADV_GAIN_PP:g} percentage points against each of pgd-at and trades, in every "
        "dataset/budget", _verdict(bool(parts), ok),
        "; ".join(parts) or "needs hybrid and pgd-at/trades runs")


def gap_claim(a: ClaimInputs) -> dict[str, str]:
    parts, ok = [], True
    for b in a.have:
        m = _means(b)
        for base in (x for x in BASELINES if x in m):
            gh, gb = m["hybrid"]["gap"], m[base]["gap"]
            if gh is None or gb is None:
                continue
            red = (f"{(1 - gh / gb) * 100:.0f}%" if gb >= 1.0
                   else "n/a (baseline gap < 1 pp)")
            ok &= gh < gb
            parts.append(f"{_where(b)}: gap {gh:.1f} vs {gb:.1f} pp ({base}), "
                         f"reduction {red}")
    return _claim(
        "gap", "6.1 / 5.1", "The hybrid reduces the robustness gap (clean - adversarial) by up "
        "to 50% compared with the baselines.", "hybrid's worst-case gap smaller than pgd-at's "
        "and trades' in every dataset/budget (reductions listed)", _verdict(bool(parts), ok),
        "; ".join(parts) or "needs hybrid and pgd-at/trades runs")


def time_claim(a: ClaimInputs) -> dict[str, str]:
    hy = [r for r in a.overhead
          if r["method"] == "hybrid" and r["time_ratio"]["mean"] is not None]
    parts = [f"{r['dataset']}: {r['time_ratio']['mean']:.2f}x standard per epoch" for r in hy]
    ok = all(r["time_ratio"]["mean"] <= TIME_RATIO_MAX for r in hy)
    at = {r["dataset"]: r["time_ratio"]["mean"] for r in a.overhead if r["method"] == "pgd-at"}
    parts += [f"{d}: pgd-at {v:.2f}x" for d, v in at.items() if v is not None]
    return _claim(
        "time", "5.3", "Training time increases by about 30% on average.",
        f"hybrid time per epoch <= {TIME_RATIO_MAX:g}x the standard run's (same data, model, "
        "seed)", _verdict(bool(hy), ok), "; ".join(parts) or "needs hybrid and standard runs")


def memory_claim(a: ClaimInputs) -> dict[str, str]:
    hm = [r for r in a.overhead
          if r["method"] == "hybrid" and r["mem_ratio"]["mean"] is not None]
    parts = [f"{r['dataset']}: peak {r['peak_mem_mb']['mean']:.0f} MiB = "
             f"{r['mem_ratio']['mean']:.2f}x standard" for r in hm]
    ok = all(r["mem_ratio"]["mean"] <= MEMORY_RATIO_MAX for r in hm)
    return _claim(
        "memory", "5.3", "Memory usage remains within practical limits.",
        "hybrid peak memory (process peak RSS on CPU, allocator peak on GPU) <= "
        f"{MEMORY_RATIO_MAX:g}x standard's", _verdict(bool(hm), ok),
        "; ".join(parts) or "needs hybrid and standard runs")


def pgd_best_claim(a: ClaimInputs) -> dict[str, str]:
    head = [b for b in a.have if b["dataset"] == a.headline] or a.have
    parts, ok, any_cmp = [], True, False
    for b in head:
        m = _means(b)
        others = [x for x in BASELINES if x in m and m[x].get("pgd") is not None]
        if not others or m["hybrid"].get("pgd") is None:
            continue
        any_cmp = True
        best = all(m["hybrid"]["pgd"] > m[x]["pgd"] for x in others)
        low_gap = all(m["hybrid"]["gap"] < m[x]["gap"] for x in others)
        ok &= best and low_gap
        parts.append(f"{_where(b)}: PGD hybrid {m['hybrid']['pgd']:.1f} vs "
                     + ", ".join(f"{x} {m[x]['pgd']:.1f}" for x in others)
                     + f"; gap hybrid {m['hybrid']['gap']:.1f} vs "
                     + ", ".join(f"{x} {m[x]['gap']:.1f}" for x in others))
    return _claim(
        "pgd-best", "5.4", "Under PGD the hybrid outperforms standard adversarial training and "
        "robust optimisation: highest adversarial accuracy and lowest robustness gap "
        "(paper: CIFAR-10).", f"on the headline dataset ({a.headline}): hybrid PGD accuracy "
        "above pgd-at's and trades', and its gap below theirs, in every budget",
        _verdict(any_cmp, ok), "; ".join(parts) or "needs hybrid and pgd-at/trades runs")


def confidence_claim(a: ClaimInputs) -> dict[str, str]:
    parts, ok, any_cmp = [], True, False
    for b in a.have:
        m = {row["method"]: row.get("pgd_conf") for row in b["rows"]}
        if m.get("hybrid") is None or len(m) < 2:
            continue
        any_cmp = True
        ok &= all(m["hybrid"] >= v for k, v in m.items() if v is not None)
        parts.append(f"{_where(b)}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()
                                                  if v is not None))
    return _claim(
        "confidence", "5.2", "The hybrid keeps higher confidence on PGD examples.",
        "hybrid's mean max-softmax on PGD examples is the highest of all methods",
        _verdict(any_cmp, ok),
        "; ".join(parts) or "needs PGD confidence of the hybrid and another method")


def clean_claim(a: ClaimInputs) -> dict[str, str]:
    parts, ok = [], True
    for b in a.have:
        m = _means(b)
        if "standard" in m:
            d = m["hybrid"]["clean"] - m["standard"]["clean"]
            ok &= d >= -CLEAN_DROP_PP
            parts.append(f"{_where(b)}: clean {m['hybrid']['clean']:.1f} vs standard "
                         f"{m['standard']['clean']:.1f} ({d:+.1f} pp)")
    return _claim(
        "clean", "6.1", "The adaptive loss keeps the clean-accuracy trade-off minimal.",
        f"hybrid clean accuracy at most {CLEAN_DROP_PP:g} percentage points below standard "
        "training's", _verdict(bool(parts), ok),
        "; ".join(parts) or "needs hybrid and standard runs")


def scalability_claim(a: ClaimInputs) -> dict[str, str]:
    models = {b["model"] for b in a.blocks}
    return _claim(
        "scalability", "6.1", "The method scales efficiently across lightweight and large-scale "
        "models.", "needs the hybrid's overhead on both small and large models",
        NOT_MEASURED, f"models evaluated here: {', '.join(sorted(models))}")


# In the order of the report's claims table.
CLAIMS: tuple[Callable[[ClaimInputs], dict[str, str]], ...] = (
    adv_accuracy_claim, gap_claim, time_claim, memory_claim, pgd_best_claim,
    confidence_claim, clean_claim, scalability_claim,
)
