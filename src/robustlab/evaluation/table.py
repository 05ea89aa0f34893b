"""A readable terminal table of one eval result (pure formatting, no torch)."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "   n/a" if value is None else f"{100 * value:6.2f}"


def _num(value: float | None, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(value, fmt)


def format_result_table(result: dict[str, Any], title: str = "") -> str:
    """Per-attack table (accuracy, gap, success rate, confidence, ECE, norms, time) plus the
    worst case, mixed set, curve and audit lines. A flagged model's numbers carry the flag."""
    audit = result.get("audit", {})
    flag = " [FLAGGED: " + ", ".join(audit.get("flags", [])) + "]" if audit.get("flagged") else ""
    s = result["settings"]
    mode = "adaptive" if s.get("adaptive", True) else "NON-ADAPTIVE (no BPDA/EOT)"
    lines = [f"{title}{flag}".strip() or "evaluation",
             f"  n={result['n']}  eps={s['eps']:g} ({s['norm']})  {mode}  "
             f"time {result['timing']['total_s']:.1f}s"]
    head = (f"  {'attack':<12}{'acc %':>8}{'gap %':>8}{'succ %':>8}{'conf':>7}{'conf ok':>8}"
            f"{'conf bad':>9}{'ECE':>7}{'L2 med':>8}{'Linf med':>9}{'time s':>8}")
    lines += [head, "  " + "-" * (len(head) - 2)]
    c = result["clean"]
    lines.append(f"  {'clean':<12}{_pct(c['acc']):>8}{'':>8}{'':>8}"
                 f"{_num(c['confidence']['mean'], '.3f'):>7}"
                 f"{_num(c['confidence']['correct'], '.3f'):>8}"
                 f"{_num(c['confidence']['incorrect'], '.3f'):>9}{_num(c['ece'], '.3f'):>7}"
                 f"{'':>8}{'':>9}{result['timing']['clean_s']:>8.1f}")
    for name, a in result["attacks"].items():
        p = a["perturbation"]
        lines.append(f"  {name:<12}{_pct(a['acc']):>8}{_pct(a['gap']):>8}"
                     f"{_pct(a['success_rate']):>8}{_num(a['confidence']['mean'], '.3f'):>7}"
                     f"{_num(a['confidence']['correct'], '.3f'):>8}"
                     f"{_num(a['confidence']['incorrect'], '.3f'):>9}{_num(a['ece'], '.3f'):>7}"
                     f"{_num(p['l2_median'], '.3f'):>8}{_num(p['linf_median'], '.3f'):>9}"
                     f"{a['seconds']:>8.1f}")
        if p.get("unbounded_l2_median") is not None and name == "cw-l2":
            lines.append(f"  {'':<12}median minimal L2 distortion (unbounded): "
                         f"{p['unbounded_l2_median']:.4f}")
    w = result["worst_case"]
    lines.append(f"  {'worst case':<12}{_pct(w['acc']):>8}{_pct(w['gap']):>8}")
    m = result["mixed"]
    lines.append(f"  mixed test set (clean/{m['attack']} halves): {_pct(m['acc']).strip()}%")
    pts = result.get("curve", {}).get("points", [])
    if pts:
        lines.append("  acc vs eps (" + str(result["curve"]["attack"]) + "): " + ", ".join(
            f"{p['eps']:.3g}:{_pct(p['acc']).strip()}%" for p in pts))
    lines += [f"  {part['off']}" for part in (result.get("curve", {}), audit)
              if part.get("off")]  # off at this norm (evaluation/settings.py `off_at`)
    for chk in audit.get("checks", []):
        lines.append(f"  audit {chk['status'].upper():<7} {chk['name']}: {chk['reason']}")
    if flag:
        lines.append(f"  WARNING: the audit flagged these numbers (a flagged check means "
                     f"masked gradients, an unconverged attack or a model that did not learn: "
                     f"the robust accuracies above are upper bounds){flag}")
    return "\n".join(lines)
