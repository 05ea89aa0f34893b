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

from robustlab.reporting.collect import method_rank  # noqa: E402
from robustlab.reporting.stats import summarize  # noqa: E402
from robustlab.reporting.tables import groups, learned  # noqa: E402

DPI = 110


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=DPI)
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
    fig, axes = plt.subplots(1, len(gs), figsize=(5.5 * len(gs), 4.2), squeeze=False)
    for ax, ((dataset, protocol, label, eps), recs) in zip(axes[0], gs.items(), strict=True):
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
        ax.legend([b1["boxes"][0], b2["boxes"][0]], ["still correct", "fooled"],
                  loc="lower left", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Figure 1: confidence of predictions on PGD adversarial examples")
    return _save(fig, path)


def pgd_comparison_figure(records: list[dict], path: Path, headline: str | None) -> Path | None:
    """Grouped bars: clean and PGD accuracy per method (mean ± std over seeds)."""
    gs = _headline_groups(records, headline)
    gs = {k: v for k, v in gs.items() if any(r["pgd"] is not None for r in v)}
    if not gs:
        return None
    fig, axes = plt.subplots(1, len(gs), figsize=(5.5 * len(gs), 4.2), squeeze=False)
    for ax, ((dataset, protocol, label, eps), recs) in zip(axes[0], gs.items(), strict=True):
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
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Figure 2: methods compared under PGD (error bars: std over seeds)")
    return _save(fig, path)


def curve_figure(records: list[dict], path: Path) -> Path | None:
    """Accuracy versus eps per method (mean over seeds), one panel per dataset/budget."""
    gs = {k: v for k, v in groups(learned(records)).items() if any(r["_curve"] for r in v)}
    if not gs:
        return None
    fig, axes = plt.subplots(1, len(gs), figsize=(5.5 * len(gs), 4.2), squeeze=False)
    for ax, ((dataset, protocol, label, eps), recs) in zip(axes[0], gs.items(), strict=True):
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
            ax.plot(xs, [sum(pts[x]) / len(pts[x]) for x in xs], marker="o",
                    label=_label(m, flagged), linestyle="--" if flagged else "-")
        ax.axvline(eps, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"eps ({recs[0]['norm']}, pixel scale [0, 1])")
        ax.set_ylabel("PGD accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{dataset}, {label} eps={eps:.3g} (dotted), {protocol}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
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
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in sorted(runs.values(), key=lambda r: (r["dataset"], r["train_eps"] or 0,
                                                  method_rank(r["method"]), r["seed"])):
        ms = r["_metrics"]
        name = (f"{r['method']} {r['dataset']} eps={r['train_eps']:.3g} "
                f"{r.get('protocol', 'paper')} s{r['seed']}")
        ep = [m["epoch"] for m in ms]
        if any(m.get("eps") is not None for m in ms):
            ax1.plot(ep, [m.get("eps") for m in ms], marker="o", label=name)
        if any(m.get("alpha") is not None for m in ms):
            ax2.plot(ep, [m.get("alpha") for m in ms], marker="o", label=name)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("eps_t (pixel scale [0, 1])")
    ax1.set_title("perturbation budget eps_t")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("weight a of the clean loss")
    ax2.set_ylim(0, 1)
    ax2.set_title("adaptive weight a = acc_adv / (acc_adv + acc_clean)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle("Figure 4: the hybrid's schedule per epoch")
    return _save(fig, path)
