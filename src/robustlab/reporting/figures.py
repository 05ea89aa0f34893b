"""The report's figures as PNG files (matplotlib, Agg backend; nothing is shown on screen).

Figure 1: confidence on PGD examples per method; Figure 2: accuracy under every attack per
method on the headline dataset; Figure 3: accuracy versus eps; Figure 4: training curves;
Figure 5: clean versus robust accuracy. The drawing is in `fig_accuracy.py` and
`fig_training.py`, the shared look in `plot_style.py`; this module saves each figure and writes
its caption, which states the number of test images, the seeds and the budgets.
Figures show only models that learned (`tables.learned`); the report lists the others.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from PIL import Image

from robustlab.reporting import fig_accuracy, fig_training
from robustlab.reporting.fig_accuracy import ZOOM_GAP_PP, Group, by_method, method_axis
from robustlab.reporting.plot_style import (
    PNG_TAG,
    RC,
    finish,
    method_style,
    panels,
    save,
    style_map,
)
from robustlab.reporting.tables import groups, learned, threat_model

__all__ = ["confidence_figure", "draw_all", "method_style"]

FILES = ("fig1_confidence_pgd.png", "fig2_attacks.png", "fig3_accuracy_vs_eps.png",
         "fig4_training.png", "fig5_tradeoff.png")


def headline_groups(records: list[dict], headline: str | None) -> dict[Group, list[dict]]:
    """The groups (dataset, protocol, budget) of the learned models of the headline dataset
    (every dataset when it has none)."""
    gs = groups(learned(records))
    return {k: v for k, v in gs.items() if k[0] == headline} or gs


def _boxes(ax: Any, methods: dict[str, list[dict]]) -> None:
    """Two boxes per method: confidence of PGD predictions that stay correct / are fooled."""
    data: dict[str, list[list[float]]] = {"1": [], "0": []}
    for rs in methods.values():
        vals: dict[str, list[float]] = defaultdict(list)
        for r in rs:
            for c, bit in zip(r["_pgd_confidence"] or [], r["_pgd_correct"] or "", strict=False):
                vals[bit].append(c)
        for bit in data:
            data[bit].append(vals[bit] or [float("nan")])
    for bit, shift, color, name in (("1", -0.19, "#66CCEE", "still correct"),
                                    ("0", 0.19, "#EE6677", "fooled")):
        b = ax.boxplot(data[bit], positions=[i + shift for i in range(len(methods))],
                       widths=0.34, patch_artist=True, showfliers=False,
                       medianprops={"color": "black"})
        for box in b["boxes"]:
            box.set_facecolor(color)
        b["boxes"][0].set_label(name)


def confidence_figure(records: list[dict], headline: str | None) -> Any:
    """Figure 1: box plots of the max-softmax confidence on PGD examples, per method, split
    into predictions that stay correct and ones that are fooled; None without per-sample
    confidences."""
    gs = {k: v for k, v in headline_groups(records, headline).items()
          if any(r["_pgd_confidence"] for r in v)}
    if not gs:
        return None
    n_methods = max(len({r["method"] for r in v}) for v in gs.values())
    fig, axes = panels(len(gs), cols=1 if n_methods > 6 else 2, height=3.8)
    for ax, (key, recs) in zip(axes, gs.items(), strict=True):
        methods = by_method([r for r in recs if r["_pgd_confidence"]])
        _boxes(ax, methods)
        method_axis(ax, methods, key, ylabel="confidence (max softmax)", ylim=(0, 1.02),
                    pad=0.6)
    finish(fig, axes, "Figure 1: confidence of predictions on PGD adversarial examples")
    return fig


def _count(values: set, noun: str) -> str:
    return ", ".join(str(v) for v in sorted(values)) + f" {noun}"


def seeds_text(records: list[dict]) -> str:
    """`3 seeds (0, 1, 2)` or `1 seed (0)`."""
    seeds = sorted({r["seed"] for r in records if r.get("seed") is not None})
    return (f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''} "
            f"({', '.join(map(str, seeds)) or 'unknown'})")


def describe(records: list[dict]) -> str:
    """`n = 1000 test images per model, 1 seed (0): single measurements, no error bars`."""
    n = {r["n"] for r in records if r.get("n") is not None}
    several = len({r["seed"] for r in records if r.get("seed") is not None}) > 1
    spread = "mean ± one std" if several else "single measurements, no error bars"
    return f"n = {_count(n, 'test images')} per model, {seeds_text(records)}: {spread}"


def budgets(gs: dict[Group, list[dict]]) -> str:
    """`mnist eps 0.03 (paper), 0.3 (recipe)`: the budgets of the groups, per dataset."""
    per: dict[str, list[str]] = defaultdict(list)
    norms = {r["norm"] for recs in gs.values() for r in recs if r.get("norm")}
    for (dataset, protocol, _, eps), recs in gs.items():  # several norms: each named
        per[dataset].append(f"{threat_model(recs[0].get('norm'), eps)} ({protocol})"
                            if len(norms) > 1 else f"{eps:g} ({protocol})")
    if len(norms) > 1:
        return "; ".join(f"{d} {', '.join(v)}" for d, v in per.items())
    norm = f"{'/'.join(sorted(norms))} " if norms else ""
    return "; ".join(f"{d} {norm}eps {', '.join(v)}" for d, v in per.items())


def curve_note(gs: dict[Group, list[dict]]) -> str:
    """Says on how many images the curves were measured, and why their eps = 0 point can
    differ from Table 1's clean accuracy."""
    pairs = {(r.get("curve_n") or next((p.get("n") for p in r["_curve"]), None), r["n"])
             for recs in gs.values() for r in recs if r["_curve"]}
    pairs = {(c, n) for c, n in pairs if c is not None and n is not None}
    if not pairs:
        return ""
    curve_n, n = _count({c for c, _ in pairs}, ""), _count({n for _, n in pairs}, "")
    if not any(c < n for c, n in pairs):
        return f" Curves on all {n.strip()} test images."
    return (f" Curves measured on the first {curve_n.strip()} of the {n.strip()} test images "
            "(curve_n), so their eps = 0 point (clean accuracy) can differ from Table 1's "
            "clean column.")


def notes(records: list[dict]) -> str:
    """What the figures leave out or mark: models that did not learn, audit flags."""
    out = []
    dropped = len({r["run_dir"] for r in records} - {r["run_dir"] for r in learned(records)})
    if dropped:
        out.append(f" {dropped} run{'s' if dropped != 1 else ''} that did not learn "
                   "(see Table 1, 'Not compared') left out.")
    if any(r.get("flagged") for r in learned(records)):
        out.append(" ⚠: an evaluation of the method flagged by the gradient-masking audit.")
    return "".join(out)


def captions(records: list[dict], headline: str | None) -> list[str]:
    """The caption of each figure, in the order of `FILES`: what is drawn, the budgets, the
    number of test images and the seeds."""
    good = learned(records)
    head, every = headline_groups(records, headline), groups(good)
    where = ", ".join(dict.fromkeys(k[0] for k in head)) or str(headline)
    facts_head, facts = describe([r for v in head.values() for r in v]), describe(good)
    tail = notes(records)
    return [
        f"Figure 1: confidence (max softmax) of PGD predictions per method on {where}; blue: "
        f"still correct, red: fooled. {budgets(head)}; {facts_head}.{tail}",
        f"Figure 2: clean accuracy, accuracy under each evaluated attack and worst-case "
        f"accuracy (an image counts only if every attack fails on it) per method on {where}. "
        f"{budgets(head)}; {facts_head}.{tail}",
        f"Figure 3: accuracy versus eps, one line per method (the dotted line is the "
        f"evaluation budget); {budgets(every)}; {facts}.{curve_note(every)}{tail}",
        "Figure 4: training curves per epoch from metrics.jsonl: clean validation accuracy, "
        "the training budget eps_t (methods that keep it constant drawn once, dotted) and the "
        f"hybrid's weight a; one line per method, mean over {seeds_text(good)}.{tail}",
        f"Figure 5: clean versus worst-case robust accuracy, one point per method (up and right "
        f"is better); a panel whose methods split into a group and far-off ones (a gap of more "
        f"than {ZOOM_GAP_PP:g} points of worst case below at least half of them) is zoomed to "
        f"the group, and its inset shows every method on the full 0-100 % range (dashed: the "
        f"zoomed region); {budgets(every)}; {facts}.{tail}",
    ]


def draw_all(records: list[dict], figdir: Path, headline: str | None
             ) -> list[tuple[Path | None, str]]:
    """Every report figure as (path or None when there is nothing to draw, caption)."""
    styles = style_map(r["method"] for r in records)
    good = learned(records)
    head, every = headline_groups(records, headline), groups(good)
    drawers = (lambda: confidence_figure(records, headline),
               lambda: fig_accuracy.attack_bars_figure(head, styles),
               lambda: fig_accuracy.curve_figure(every, styles),
               lambda: fig_training.training_figure(good, styles),
               lambda: fig_accuracy.tradeoff_figure(every, styles))
    out = []
    with plt.rc_context(RC):
        for name, draw, caption in zip(FILES, drawers, captions(records, headline),
                                       strict=True):
            fig = draw()
            out.append((save(fig, figdir / name) if fig is not None else None, caption))
    remove_stale(figdir, {p.name for p, _ in out if p is not None})
    return out


def remove_stale(figdir: Path, keep: set[str]) -> None:
    """Delete report figures (`figN_*.png`) in `figdir` that this report did not draw: left
    by an earlier report (other names, or a figure with nothing to draw now), and the
    temporary files of a killed report's figure writes. A PNG is deleted only when it carries
    the report's tag (`plot_style.PNG_TAG`): an image of the user's of the same name stays."""
    if not figdir.is_dir():
        return
    for old in figdir.glob(".fig[0-9]*_*.png.*.tmp"):
        old.unlink(missing_ok=True)
    for old in figdir.glob("fig[0-9]*_*.png"):
        if old.name not in keep and _is_report_figure(old):
            old.unlink()


def _is_report_figure(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            tags = dict(getattr(image, "text", {}) or {})
    except (OSError, ValueError):
        return False
    return all(tags.get(k) == v for k, v in PNG_TAG.items())
