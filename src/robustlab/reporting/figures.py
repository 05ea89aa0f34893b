"""The report's figures as PNG files (matplotlib, Agg backend; nothing is shown on screen).

Figure 1: confidence on PGD examples per method; Figure 2: methods under PGD on the headline
dataset; Figure 3: accuracy versus eps; Figure 4: the hybrid's eps_t and weight a per epoch.
Each function returns the written path, or None when the results hold nothing to plot.
Figures 1-3 show only models that learned (`tables.learned`); the report lists the others.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from robustlab.reporting.collect import METHOD_ORDER, method_rank  # noqa: E402
from robustlab.reporting.stats import summarize  # noqa: E402
from robustlab.reporting.tables import groups, learned  # noqa: E402

DPI = 110
PANELS_PER_ROW = 2
# tab20's 10 dark shades, then its 10 light ones; with 5 markers every method of METHOD_ORDER
# keeps one style in every figure, and a light shade never shares a marker with its dark twin.
_COLORS = plt.get_cmap("tab20").colors[0::2] + plt.get_cmap("tab20").colors[1::2]
_MARKERS = ("o", "s", "^", "D", "v")


def method_style(method: str) -> dict[str, Any]:
    """The colour and marker of `method`, the same in every figure."""
    i = (METHOD_ORDER.index(method) if method in METHOD_ORDER
         else len(METHOD_ORDER) + sum(map(ord, method)) % 20)
    return {"color": _COLORS[i % 20], "marker": _MARKERS[(i + i // 10) % len(_MARKERS)]}


def _panels(n: int, width: float = 5.5, height: float = 4.0):
    """A grid of `n` panels, at most `PANELS_PER_ROW` a row; returns (figure, axes list)."""
    cols = min(n, PANELS_PER_ROW)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _figure_legend(fig: Any, axes: list[Any], ncol: int = 5) -> None:
    """One legend for the whole figure, below the panels (never over data); entries are
    de-duplicated by label, in the order they were drawn."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="upper center", ncol=min(ncol, len(seen)),
                   bbox_to_anchor=(0.5, 0.0), fontsize=9, frameon=False)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def _label(method: str, flagged: bool) -> str:
    return f"{method} ⚠" if flagged else method


def _headline_groups(records: list[dict], headline: str | None):
    gs = groups(learned(records))
    return {k: v for k, v in gs.items() if k[0] == headline} or gs


def confidence_figure(records: list[dict], path: Path, headline: str | None) -> Path | None:
    """Box plots of the max-softmax confidence on PGD examples, per method, split into
    predictions that stay correct and ones that are fooled."""
    gs = {k: v for k, v in _headline_groups(records, headline).items()
          if any(r["_pgd_confidence"] for r in v)}
    if not gs:
        return None
    fig, axes = _panels(len(gs))
    for ax, ((dataset, protocol, label, eps), recs) in zip(axes, gs.items(), strict=True):
        by: dict[str, list[dict]] = defaultdict(list)
        for r in recs:
            if r["_pgd_confidence"]:
                by[r["method"]].append(r)
        methods = sorted(by, key=method_rank)
        ok_data, bad_data = [], []
        for m in methods:
            ok, bad = [], []
            for r in by[m]:
                for c, bit in zip(r["_pgd_confidence"], r["_pgd_correct"] or "", strict=False):
                    (ok if bit == "1" else bad).append(c)
            ok_data.append(ok or [float("nan")])
            bad_data.append(bad or [float("nan")])
        pos = range(len(methods))
        b1 = ax.boxplot(ok_data, positions=[p - 0.18 for p in pos], widths=0.3,
                        patch_artist=True, showfliers=False)
        b2 = ax.boxplot(bad_data, positions=[p + 0.18 for p in pos], widths=0.3,
                        patch_artist=True, showfliers=False)
        for box in b1["boxes"]:
            box.set_facecolor("#7fc97f")
        for box in b2["boxes"]:
            box.set_facecolor("#f0827d")
        ax.set_xticks(list(pos))
        ax.set_xticklabels([_label(m, any(r["flagged"] for r in by[m])) for m in methods],
                           rotation=30, ha="right")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("confidence (max softmax probability)")
        ax.set_title(f"{dataset}, PGD eps={eps:.3g} ({label}, {protocol})")
        b1["boxes"][0].set_label("still correct")
        b2["boxes"][0].set_label("fooled")
        ax.grid(axis="y", alpha=0.3)
    _figure_legend(fig, axes)
    fig.suptitle("Figure 1: confidence of predictions on PGD adversarial examples")
    return _save(fig, path)


def pgd_comparison_figure(records: list[dict], path: Path, headline: str | None) -> Path | None:
    """Grouped bars: clean and PGD accuracy per method (mean ± std over seeds)."""
    gs = _headline_groups(records, headline)
    gs = {k: v for k, v in gs.items() if any(r["pgd"] is not None for r in v)}
    if not gs:
        return None
    fig, axes = _panels(len(gs))
    seeds = sorted({r["seed"] for recs in gs.values() for r in recs})
    for ax, ((dataset, protocol, label, eps), recs) in zip(axes, gs.items(), strict=True):
        methods = sorted({r["method"] for r in recs}, key=method_rank)
        for j, (col, name, color) in enumerate((("clean", "clean", "#8da0cb"),
                                                ("pgd", "PGD", "#e78ac3"),
                                                ("worst", "worst case", "#66c2a5"))):
            stats = [summarize([100 * r[col] for r in recs
                                if r["method"] == m and r[col] is not None]) for m in methods]
            xs = [i + (j - 1) * 0.27 for i in range(len(methods))]
            errors = [s.std or 0 for s in stats] if any(s.std for s in stats) else None
            ax.bar(xs, [s.mean or 0 for s in stats], width=0.27, color=color, label=name,
                   yerr=errors, capsize=3)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([_label(m, any(r["flagged"] for r in recs if r["method"] == m))
                            for m in methods], rotation=30, ha="right")
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{dataset}, eps={eps:.3g} ({label}, {protocol})")
        ax.grid(axis="y", alpha=0.3)
    _figure_legend(fig, axes)
    bars = ("error bars: std over seeds" if len(seeds) > 1
            else "one seed: single measurements, no error bars")
    fig.suptitle(f"Figure 2: methods compared under PGD ({bars})")
    return _save(fig, path)


def curve_figure(records: list[dict], path: Path) -> Path | None:
    """Accuracy versus eps per method (mean over seeds), one panel per dataset/budget."""
    gs = {k: v for k, v in groups(learned(records)).items() if any(r["_curve"] for r in v)}
    if not gs:
        return None
    fig, axes = _panels(len(gs))
    for ax, ((dataset, protocol, label, eps), recs) in zip(axes, gs.items(), strict=True):
        for m in sorted({r["method"] for r in recs}, key=method_rank):
            pts: dict[float, list[float]] = defaultdict(list)
            flagged = False
            for r in recs:
                if r["method"] == m:
                    flagged |= r["flagged"]
                    for p in r["_curve"]:
                        if p["acc"] is not None:
                            pts[p["eps"]].append(100 * p["acc"])
            xs = sorted(pts)
            ax.plot(xs, [sum(pts[x]) / len(pts[x]) for x in xs], label=_label(m, flagged),
                    linestyle="--" if flagged else "-", **method_style(m))
        ax.axvline(eps, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"eps ({recs[0]['norm']}, pixel scale [0, 1])")
        ax.set_ylabel("PGD accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{dataset}, {label} eps={eps:.3g} (dotted), {protocol}")
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    fig.suptitle("Figure 3: accuracy versus perturbation budget")
    return _save(fig, path)


def hybrid_schedule_figure(records: list[dict], path: Path) -> Path | None:
    """The hybrid's (and its ablations') eps_t and adaptive weight a per epoch."""
    runs = {r["run_dir"]: r for r in records if r["method"].startswith("hybrid")
            or r["method"] == "mix"}
    runs = {k: v for k, v in runs.items() if any("eps" in m or "alpha" in m
                                                 for m in v["_metrics"])}
    if not runs:
        return None
    rows: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs.values():
        rows[(r["dataset"], r["train_eps"] or 0.0, r.get("protocol", "paper"))].append(r)
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.2 * len(rows)), squeeze=False)
    for (ax1, ax2), ((dataset, eps, protocol), recs) in zip(axes, sorted(rows.items()),
                                                           strict=True):
        for r in sorted(recs, key=lambda r: (method_rank(r["method"]), r["seed"])):
            ms, style = r["_metrics"], method_style(r["method"])
            ep = [m["epoch"] for m in ms]
            name = r["method"] + (f" s{r['seed']}" if len(recs) > len(
                {x["method"] for x in recs}) else "")
            if any(m.get("eps") is not None for m in ms):
                ax1.plot(ep, [m.get("eps") for m in ms], label=name, **style)
            if any(m.get("alpha") is not None for m in ms):
                ax2.plot(ep, [m.get("alpha") for m in ms], label=name, **style)
        ax1.set_ylabel("eps_t (pixel scale [0, 1])")
        ax1.set_title(f"{dataset}, eps={eps:.3g} ({protocol}): budget eps_t", fontsize=10)
        ax2.set_ylabel("weight a of the clean loss")
        ax2.set_ylim(0, 1)
        ax2.set_title(f"{dataset}, eps={eps:.3g} ({protocol}): a = acc_adv / "
                      "(acc_adv + acc_clean)", fontsize=10)
        for ax in (ax1, ax2):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.xaxis.get_major_locator().set_params(integer=True)
    _figure_legend(fig, list(axes.flat), ncol=6)
    fig.suptitle("Figure 4: the hybrid's schedule per epoch")
    return _save(fig, path)


def draw_all(records: list[dict], figdir: Path, headline: str | None
             ) -> list[tuple[Path | None, str]]:
    """Every report figure as (path or None when there is nothing to draw, caption)."""
    return [
        (confidence_figure(records, figdir / "fig1_confidence_pgd.png", headline),
         "Figure 1: confidence (max softmax) of predictions on PGD examples, per method; green: "
         "still correct, red: fooled."),
        (pgd_comparison_figure(records, figdir / "fig2_methods_pgd.png", headline),
         f"Figure 2: clean, PGD and worst-case accuracy per method on {headline}."),
        (curve_figure(records, figdir / "fig3_accuracy_vs_eps.png"),
         "Figure 3: PGD accuracy versus eps (the dotted line is the budget)."),
        (hybrid_schedule_figure(records, figdir / "fig4_hybrid_schedule.png"),
         "Figure 4: the hybrid's budget eps_t and weight a per epoch."),
    ]
