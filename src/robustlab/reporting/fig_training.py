"""Figure 4: training curves from each run's `metrics.jsonl`: validation accuracy per epoch for
every method, and the budget eps_t and the hybrid's weight a per epoch for the methods that
log them. One row per dataset and protocol, one line per method (mean over seeds)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import matplotlib.pyplot as plt

from robustlab.reporting.fig_accuracy import by_method
from robustlab.reporting.plot_style import (
    FIG_WIDTH,
    NOTE_SIZE,
    epoch_axis,
    finish,
    method_style,
)
from robustlab.reporting.stats import summarize

# (metrics.jsonl keys tried in turn, y label, y limits or None); a column is drawn when any run
# logs it
PANELS = ((("val_clean_acc", "val_acc"), "validation accuracy (%)", None),
          (("eps",), "training budget eps_t (pixel scale)", None),
          (("alpha",), "hybrid weight a of the clean loss", (0, 1)))


def _value(row: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    return next((row[k] for k in keys if row.get(k) is not None), None)


def _series(runs: list[dict], keys: tuple[str, ...], scale: float) -> dict[int, float]:
    """{epoch: mean over the runs} of the first of `keys` each metrics row holds."""
    per: dict[int, list[float]] = defaultdict(list)
    for r in runs:
        for row in r["_metrics"]:
            v = _value(row, keys)
            if v is not None and row.get("epoch") is not None:
                per[int(row["epoch"])].append(scale * v)
    return {e: summarize(v).mean for e, v in sorted(per.items())}


def training_rows(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """One record per run (a run evaluated at several budgets has one metrics file), by
    (dataset, protocol); runs without metrics are left out."""
    runs: dict[str, dict] = {}
    for r in records:
        if r.get("_metrics"):
            runs.setdefault(r["run_dir"], r)
    rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs.values():
        rows[(r["dataset"], r.get("protocol", "paper"))].append(r)
    return dict(sorted(rows.items()))


def training_figure(records: list[dict], styles=None) -> Any:
    """Figure 4, or None when no run has a metrics file."""
    rows = training_rows(records)
    cols = [p for p in PANELS if any(_value(m, p[0]) is not None for recs in rows.values()
                                     for r in recs for m in r["_metrics"])]
    if not rows or not cols:
        return None
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(FIG_WIDTH, 3.3 * len(rows)),
                             squeeze=False)
    for row_axes, ((dataset, protocol), recs) in zip(axes, rows.items(), strict=True):
        train_eps = sorted({r["train_eps"] for r in recs if r.get("train_eps")})
        where = f"{dataset}, {protocol}" + (  # short: three panels share a row
            f", eps={'/'.join(f'{e:g}' for e in train_eps)}" if train_eps else "")
        for ax, (keys, ylabel, ylim) in zip(row_axes, cols, strict=True):
            _draw_panel(ax, by_method(recs), keys, styles)
            ax.set_ylabel(ylabel)
            if ylim:
                ax.set_ylim(*ylim)
            ax.set_title(where)
            ax.grid(alpha=0.3)
            epoch_axis(ax, [m["epoch"] for r in recs for m in r["_metrics"] if "epoch" in m])
    finish(fig, list(axes.flat), "Figure 4: training curves per epoch", ncol=5)
    return fig


def dodge(series: dict[str, dict[int, float]], step: float = 0.07, spread: float = 0.5
          ) -> dict[str, float]:
    """{method: x offset}: methods whose lines are identical are set side by side (`step`
    epochs apart, `spread` at most in all) so that each stays visible; others keep 0."""
    same: dict[tuple, list[str]] = defaultdict(list)
    for m, sr in series.items():
        same[tuple((e, round(v, 6)) for e, v in sr.items())].append(m)
    return {m: (i - (len(ms) - 1) / 2) * min(step, spread / max(1, len(ms) - 1))
            for ms in same.values() for i, m in enumerate(ms)}


def _draw_panel(ax: Any, methods: dict[str, list[dict]], keys: tuple[str, ...], styles) -> None:
    """One line per method that logs any of `keys`; accuracies are drawn in %. For the budget,
    methods whose eps_t never changes are not drawn (their lines would hide one another): a
    dotted line gives their value."""
    scale = 100.0 if keys[0].endswith("acc") else 1.0
    series = {m: sr for m, rs in methods.items() if (sr := _series(rs, keys, scale))}
    constant = set()
    if keys == ("eps",):
        constant = {v for sr in series.values() if len(set(sr.values())) == 1
                    for v in sr.values()}
        series = {m: sr for m, sr in series.items() if len(set(sr.values())) > 1}
    shift = dodge(series)
    for m, sr in series.items():
        ax.plot([e + shift[m] for e in sr], list(sr.values()), label=m, markersize=6,
                linewidth=1.6, **method_style(m, styles))
    for v in constant:
        ax.axhline(v, color="grey", linewidth=1, linestyle=":")
    top = max([v for sr in series.values() for v in sr.values()] + list(constant), default=0)
    if keys == ("eps",) and top > 0:
        ax.set_ylim(0, 1.12 * top)
    if constant:
        ax.text(0.98, 0.04, "dotted: eps_t of the methods\nthat keep it constant",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=NOTE_SIZE,
                color="#444444")
    if not ax.lines:
        ax.text(0.5, 0.5, "not logged by these methods", transform=ax.transAxes,
                ha="center", va="center", color="grey")
