"""Accuracy figures: every attack per method (bars), clean versus robust accuracy (one point
per method) and accuracy versus eps (one line per method). Seeds are aggregated: the mean,
with error bars / a band of one sample std when there is more than one seed.

Each function takes the records of one report and returns a matplotlib figure, or None when
they hold nothing to draw; `figures.py` saves it and writes the caption.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from matplotlib.ticker import MaxNLocator

from robustlab.reporting.collect import method_rank
from robustlab.reporting.plot_style import (
    ATTACK_COLORS,
    CLEAN_COLOR,
    NOTE_SIZE,
    WORST_COLOR,
    finish,
    flag_label,
    method_style,
    panels,
)
from robustlab.reporting.stats import summarize

# record columns that hold one attack's accuracy, in the order the bars are drawn
ATTACK_COLUMNS = (("fgsm", "FGSM"), ("pgd", "PGD"), ("cw", "CW"), ("autoattack", "AutoAttack"))
# how an attack's registry name is shown (others are shown as they are spelled)
ATTACK_NAMES = {"fgsm": "FGSM", "pgd": "PGD", "cw-l2": "CW-L2", "cw-linf": "CW-Linf",
                "autoattack": "AutoAttack", "square": "Square", "apgd-ce": "APGD-CE",
                "apgd-dlr": "APGD-DLR", "fab": "FAB", "deepfool": "DeepFool", "fmn": "FMN",
                "ddn": "DDN"}

Group = tuple[str, str, str, float]  # (dataset, protocol, budget label, eps)


def attack_accuracies(record: dict[str, Any]) -> dict[str, float]:
    """{attack name: accuracy} of the attacks this record was evaluated with, in the
    evaluation's order: the record's `attack_acc` mapping (collect), else its per-attack
    columns (records written before it existed)."""
    given = record.get("attack_acc")
    if isinstance(given, dict):
        return {ATTACK_NAMES.get(k, k): v for k, v in given.items() if v is not None}
    out = {}
    for col, name in ATTACK_COLUMNS:
        if record.get(col) is not None:
            raw = record.get("cw_attack") if col == "cw" else None
            out[ATTACK_NAMES.get(raw, raw) if raw else name] = record[col]
    return out


def by_method(recs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records by method, methods in report order."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in recs:
        out[r["method"]].append(r)
    return {m: out[m] for m in sorted(out, key=method_rank)}


def panel_title(key: Group, with_dataset: bool = True) -> str:
    """`mnist, eps=0.3 (recipe)`: the dataset, the budget and the protocol of a panel."""
    dataset, protocol, label, eps = key
    budget = "" if label in (protocol, f"eps={eps:g}") else f", budget '{label}'"
    return (f"{dataset}, " if with_dataset else "") + f"eps={eps:.3g} ({protocol} protocol{budget})"


def method_axis(ax: Any, methods: dict[str, list[dict]], key: Group, *, ylabel: str,
                ylim: tuple[float, float], pad: float) -> None:
    """A panel with one x position per method (flagged ones marked), `pad` positions of
    margin each side, the y label and range, the panel's title and a y grid."""
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels([flag_label(m, any(r["flagged"] for r in rs))
                        for m, rs in methods.items()], rotation=25, ha="right")
    ax.set_xlim(-pad, len(methods) - 1 + pad)
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(panel_title(key))
    ax.grid(axis="y", alpha=0.3)


def _pct(recs: list[dict], value) -> tuple[float | None, float]:
    """(mean, std or 0) over seeds of `value(record)` in %, ignoring missing values."""
    s = summarize([None if (v := value(r)) is None else 100 * v for r in recs])
    return s.mean, s.std or 0.0


def _mark_low(ax: Any, xs: list[float], means: list[float | None]) -> None:
    """Write the value over bars too short to see (under 3 %), and n/a where there is none."""
    for x, m in zip(xs, means, strict=True):
        if m is None or m < 3:
            ax.text(x, (m or 0) + 1, "n/a" if m is None else f"{m:.0f}", ha="center",
                    va="bottom", fontsize=NOTE_SIZE, color="#444444")


def attack_bars_figure(gs: dict[Group, list[dict]], styles=None) -> Any:
    """Figure 2: one bar group per method, one bar for clean accuracy, one per evaluated
    attack and one for the worst case; one full-width panel per protocol / budget."""
    gs = {k: v for k, v in gs.items() if any(attack_accuracies(r) for r in v)}
    if not gs:
        return None
    n_methods = max(len({r["method"] for r in v}) for v in gs.values())
    fig, axes = panels(len(gs), cols=1 if n_methods > 6 else 2, height=4.2)
    for ax, (key, recs) in zip(axes, gs.items(), strict=True):
        methods = by_method(recs)
        attacks = list(dict.fromkeys(a for r in recs for a in attack_accuracies(r)))
        bars = ([("clean", lambda r: r["clean"], CLEAN_COLOR)]
                + [(a, lambda r, a=a: attack_accuracies(r).get(a), ATTACK_COLORS[i % 6])
                   for i, a in enumerate(attacks)]
                + [("worst case", lambda r: r["worst"], WORST_COLOR)])
        width = 0.84 / len(bars)
        for j, (name, value, color) in enumerate(bars):
            stats = [_pct(rs, value) for rs in methods.values()]
            xs = [i + (j - (len(bars) - 1) / 2) * width for i in range(len(methods))]
            errors = [s for _, s in stats] if any(s for _, s in stats) else None
            ax.bar(xs, [m or 0 for m, _ in stats], width=width, color=color, label=name,
                   yerr=errors, capsize=2, edgecolor="white", linewidth=0.4)
            _mark_low(ax, xs, [m for m, _ in stats])
        method_axis(ax, methods, key, ylabel="accuracy (%)", ylim=(0, 100), pad=0.55)
    finish(fig, axes, "Figure 2: accuracy under every attack, per method", ncol=len(bars))
    return fig


def widen(ax: Any, span: float, lo: float = -1.0, hi: float = 101.0) -> None:
    """Make both axes show at least `span` (percentage points) and stay inside [lo, hi]: one
    point, or points that all but coincide, are not blown up to fill the panel."""
    for get, set_ in ((ax.get_xlim, ax.set_xlim), (ax.get_ylim, ax.set_ylim)):
        a, b = get()
        if b - a < span:
            a, b = (a + b - span) / 2, (a + b + span) / 2
        if b > hi:
            a, b = a - (b - hi), hi
        if a < lo:
            a, b = lo, min(hi, b + (lo - a))
        set_(a, b)


# Figure 5: a gap of more than ZOOM_GAP_PP points of worst-case accuracy below at least half
# of a panel's methods splits off the far-off ones (e.g. models that are not robust at all):
# the panel zooms to the methods above the gap and an inset of side INSET (share of the
# panel) shows every method on the full 0-100 % range, the zoomed region outlined.
ZOOM_GAP_PP = 10.0
INSET = 0.3
# inset corners (lower left of its box, axes fraction) tried in turn; room kept for its
# tick labels and title
CORNERS = ((0.66, 0.13), (0.11, 0.13), (0.66, 0.55), (0.11, 0.55))
Point = tuple[str, float, float, float, float, bool]  # method, clean, std, worst, std, flag


def zoom_floor(worst: list[float], gap: float = ZOOM_GAP_PP) -> float | None:
    """The worst-case accuracy (%) a zoomed panel shows the methods above: the middle of the
    first gap wider than `gap` below at least half of the values; None when there is none."""
    ys = sorted(worst, reverse=True)
    for i in range(max(1, -(-len(ys) // 2)), len(ys)):
        if ys[i - 1] - ys[i] > gap:
            return (ys[i - 1] + ys[i]) / 2
    return None


def _points(recs: list[dict]) -> list[Point]:
    """One point per method (mean and std over seeds, in %); methods without both left out."""
    out = []
    for m, rs in by_method(recs).items():
        (cx, sx), (cy, sy) = _pct(rs, lambda r: r["clean"]), _pct(rs, lambda r: r["worst"])
        if cx is not None and cy is not None:
            out.append((m, cx, sx, cy, sy, any(r["flagged"] for r in rs)))
    return out


def _zoom_to(ax: Any, pts: list[Point]) -> None:
    """Axis limits around `pts` (error bars included), 8 % margins (at least half a point),
    at least 2 points wide."""
    xs = [v for p in pts for v in (p[1] - p[2], p[1] + p[2])]
    ys = [v for p in pts for v in (p[3] - p[4], p[3] + p[4])]
    for (lo, hi), set_ in (((min(xs), max(xs)), ax.set_xlim), ((min(ys), max(ys)), ax.set_ylim)):
        pad = max(0.08 * (hi - lo), 0.5)
        set_(lo - pad, hi + pad)
    widen(ax, span=2.0)


def _free_corner(ax: Any, pts: list[Point]) -> tuple[float, float]:
    """The first of `CORNERS` whose inset (with its labels) covers none of `pts`; when all
    are taken, the y range is stretched down so the points fill the upper half only."""
    to_axes = ax.transData + ax.transAxes.inverted()
    where = [to_axes.transform((p[1], p[3])) for p in pts]
    for x, y in CORNERS:
        if not any(x - 0.1 <= u <= x + INSET + 0.03 and y - 0.13 <= v <= y + INSET + 0.08
                   for u, v in where):
            return x, y
    lo, hi = ax.get_ylim()
    ax.set_ylim(hi - 2.2 * (hi - lo), hi)
    return CORNERS[0]


def _overview(ax: Any, pts: list[Point], styles) -> Any:
    """The inset: every point, worst case on the full 0-100 % range (clean accuracy over all
    the points' range), the zoomed region as a dashed box."""
    from matplotlib.patches import Rectangle

    inset = ax.inset_axes([*_free_corner(ax, pts), INSET, INSET])
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for m, cx, _, cy, _, _ in pts:
        st = method_style(m, styles)
        inset.plot([cx], [cy], linestyle="none", marker=st["marker"], color=st["color"],
                   markerfacecolor=st["markerfacecolor"], markersize=4, label="_inset")
    inset.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="#444444",
                              linestyle="--", linewidth=0.8))
    xs = [p[1] for p in pts] + [x0, x1]
    pad = max(1.0, 0.1 * (max(xs) - min(xs)))
    inset.set_xlim(min(xs) - pad, max(xs) + pad)
    inset.xaxis.set_major_locator(MaxNLocator(3))
    inset.set_ylim(-5, 105)  # 0-100, markers at 0 or 100 whole
    inset.set_yticks([0, 50, 100])
    inset.tick_params(labelsize=NOTE_SIZE, length=2, pad=1)
    inset.set_title("all methods, 0-100 %", fontsize=NOTE_SIZE, pad=2)
    return inset


def tradeoff_figure(gs: dict[Group, list[dict]], styles=None) -> Any:
    """Figure 5: clean versus worst-case accuracy, one point per method (mean over seeds,
    error bars one std in both directions when there are several seeds). A panel whose
    methods split into a group and far-off ones (`zoom_floor`) is zoomed to the group, with
    the full range in an inset."""
    gs = {k: v for k, v in gs.items() if any(r["worst"] is not None for r in v)}
    if not gs:
        return None
    fig, axes = panels(len(gs), height=4.4)
    for ax, (key, recs) in zip(axes, gs.items(), strict=True):
        pts = _points(recs)
        for m, cx, sx, cy, sy, flagged in pts:
            st = method_style(m, styles)
            ax.errorbar([cx], [cy], xerr=[sx] if sx else None, yerr=[sy] if sy else None,
                        label=flag_label(m, flagged), markersize=8,
                        color=st["color"], marker=st["marker"], linestyle="none",
                        markerfacecolor=st["markerfacecolor"], markeredgecolor=st["color"],
                        capsize=3, alpha=0.9)
        ax.set_xlabel("clean accuracy (%)")
        ax.set_ylabel("worst-case robust accuracy (%)")
        ax.set_title(panel_title(key))
        ax.grid(alpha=0.3)
        floor = zoom_floor([p[3] for p in pts]) if pts else None
        if floor is None:
            ax.margins(0.08)
            widen(ax, span=2.0)
            continue
        _zoom_to(ax, [p for p in pts if p[3] > floor])
        _overview(ax, pts, styles)
    finish(fig, axes, "Figure 5: clean versus robust accuracy, one point per method", ncol=5)
    return fig


def _curve_points(rs: list[dict]) -> dict[float, list[float]]:
    """{eps: [accuracy in % of each seed]} of the records' accuracy-versus-eps curves."""
    pts: dict[float, list[float]] = defaultdict(list)
    for r in rs:
        for p in r["_curve"]:
            if p.get("acc") is not None:
                pts[p["eps"]].append(100 * p["acc"])
    return pts


def curve_attack(recs: list[dict]) -> str:
    """The curve's attack as the records name it (`curve_attack`), PGD when they do not."""
    names = {r.get("curve_attack") for r in recs} - {None}
    return str(names.pop()).upper() if len(names) == 1 else "PGD"


def distance_accuracy(values: list, eps: float) -> float | None:
    """Robust accuracy (%) at `eps` read off one record's minimal distances (null: the
    attack found no adversarial point): the share of images whose distance is beyond eps."""
    ok = [v for v in values if v is None or isinstance(v, (int, float))]
    if not ok:
        return None
    return 100 * sum(v is None or v > eps * (1 + 1e-5) + 1e-6 for v in ok) / len(ok)


def distance_curves(rs: list[dict], norm: str) -> dict[str, list[list]]:
    """{attack: [each seed's distances]} of the records' minimum-norm attacks measured in
    `norm` (the panel's), attacks in name order."""
    out: dict[str, list[list]] = defaultdict(list)
    for r in rs:
        for attack, entry in sorted((r.get("_distances") or {}).items()):
            if isinstance(entry, dict) and entry.get("norm") == norm \
                    and isinstance(entry.get("values"), list):
                out[attack].append(entry["values"])
    return out


def _draw_distance_curves(ax: Any, rs: list[dict], norm: str, top: float, label: str,
                          style: dict[str, Any]) -> None:
    """The accuracy-versus-eps curve read off each minimum-norm attack's distances (one run,
    every eps): dashed, in the method's colour, on 200 budgets from 0 to `top`."""
    xs = [top * i / 199 for i in range(200)]
    for k, (attack, seeds) in enumerate(distance_curves(rs, norm).items()):
        accs = [[a for a in (distance_accuracy(v, x) for v in seeds) if a is not None]
                for x in xs]
        if not all(accs):
            continue
        ax.plot(xs, [summarize(a).mean for a in accs], color=style["color"],
                linestyle=("--", "-.", ":")[k % 3], linewidth=1.2,
                label=f"{label}, {ATTACK_NAMES.get(attack, attack.upper())} distances")


def _panel_top(recs: list[dict], budget: float) -> float:
    """The largest eps a panel shows: its PGD curve's, else three times its budget."""
    eps = [p["eps"] for r in recs for p in r["_curve"] if p.get("eps") is not None]
    return max(eps) if eps else 3 * budget


def curve_figure(gs: dict[Group, list[dict]], styles=None) -> Any:
    """Figure 3: accuracy versus eps, one line per method (mean over seeds, a band of one std
    when there are several), one panel per dataset / protocol / budget; the dotted line is
    the budget. Beside each, dashed: the curve read off a minimum-norm attack's per-image
    distances (fmn, ddn; `per_sample.distances`), where the evaluation ran one."""
    gs = {k: v for k, v in gs.items()
          if any(r["_curve"] or distance_curves([r], r["norm"]) for r in v)}
    if not gs:
        return None
    fig, axes = panels(len(gs), height=4.0)
    for ax, (key, recs) in zip(axes, gs.items(), strict=True):
        for m, rs in by_method(recs).items():
            _draw_distance_curves(ax, rs, recs[0]["norm"], _panel_top(recs, key[3]),
                                  flag_label(m, any(r["flagged"] for r in rs)),
                                  method_style(m, styles))
            pts = _curve_points(rs)
            if not pts:
                continue
            xs = sorted(pts)
            mean = [summarize(pts[x]).mean for x in xs]
            std = [summarize(pts[x]).std or 0.0 for x in xs]
            st = method_style(m, styles)
            ax.plot(xs, mean, label=flag_label(m, any(r["flagged"] for r in rs)),
                    markersize=6, linewidth=1.6, **st)
            if any(std):
                ax.fill_between(xs, [a - s for a, s in zip(mean, std, strict=True)],
                                [a + s for a, s in zip(mean, std, strict=True)],
                                color=st["color"], alpha=0.15, linewidth=0)
        ax.axvline(key[3], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"eps ({recs[0]['norm']}, pixel scale [0, 1])")
        with_distances = bool(distance_curves(recs, recs[0]["norm"]))
        ax.set_ylabel("robust accuracy (%)" if with_distances  # PGD's and the dashed ones
                      else f"{curve_attack(recs)} accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(panel_title(key))
        ax.grid(alpha=0.3)
    finish(fig, axes, "Figure 3: accuracy versus perturbation budget", ncol=5)
    return fig
