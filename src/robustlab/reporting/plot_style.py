"""The look shared by every report figure: the method style cycle, panel grids, the legend
below the panels, integer epoch axes and saving (matplotlib, Agg backend).

Styles: 7 colour-blind-safe colours (Okabe-Ito without its yellow, which is unreadable on
white), then the cycle repeats with hollow markers, a different marker and a dashed line, then
again dotted; so the first 49 methods each get their own (colour, marker) pair and two methods
that share a colour never share a marker, fill or line style.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from robustlab.common.files import atomic_write  # noqa: E402
from robustlab.reporting.collect import METHOD_ORDER, method_rank  # noqa: E402

DPI = 110
# Every report figure is FIG_WIDTH inches wide (at DPI: 1,100 px, within report.html's
# 1,140 px column) with the fonts of RC, and report.html shows each PNG at its own pixel size,
# so text has one size in every figure and no figure is scaled up.
FIG_WIDTH = 10.0
FLAG_SIGN = " ⚠"  # appended to a method's name when the audit flagged it (flag_label)
PANELS_PER_ROW = 2
COLORS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", ":")
# the attack bars of Figure 2: clean and worst case in greys, attacks in Paul Tol's "bright"
CLEAN_COLOR, WORST_COLOR = "#BBBBBB", "#333333"
ATTACK_COLORS = ("#4477AA", "#66CCEE", "#228833", "#CCBB44", "#EE6677", "#AA3377")
NOTE_SIZE = 8  # notes inside a panel, insets, values over bars: the one size below RC's
RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
      "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 12}


def style_at(i: int) -> dict[str, Any]:
    """The i-th style of the cycle: color, marker, linestyle, markerfacecolor."""
    cycle, k = divmod(i, len(COLORS))
    color = COLORS[k]
    return {"color": color, "marker": MARKERS[(k + 3 * cycle) % len(MARKERS)],
            "linestyle": LINESTYLES[cycle % len(LINESTYLES)],
            "markerfacecolor": color if cycle % 2 == 0 else "white", "markeredgecolor": color}


def style_map(methods: Iterable[str]) -> dict[str, dict[str, Any]]:
    """One style per method, methods in report order (`METHOD_ORDER`, then by name); the
    report builds it once from every record so a method looks the same in every figure."""
    return {m: style_at(i) for i, m in enumerate(sorted(set(methods), key=method_rank))}


def method_style(method: str, styles: dict[str, dict[str, Any]] | None = None
                 ) -> dict[str, Any]:
    """The style of `method`: from `styles` (a `style_map`) when it is there, otherwise its
    place in `METHOD_ORDER` (names outside it follow, by a stable hash of the name)."""
    if styles and method in styles:
        return styles[method]
    i = (METHOD_ORDER.index(method) if method in METHOD_ORDER
         else len(METHOD_ORDER) + sum(map(ord, method)) % 34)
    return style_at(i)


def panels(n: int, *, cols: int = PANELS_PER_ROW, height: float = 4.0):
    """A grid of `n` panels, `height` inches each, that wraps after `cols` a row, FIG_WIDTH
    wide whatever the number of columns; returns (figure, axes list)."""
    cols = max(1, min(n, cols))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(FIG_WIDTH, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def finish(fig: Any, axes: list[Any], title: str, ncol: int = 5) -> Any:
    """Give `fig` its title, lay it out and put one legend for the whole figure below every
    panel (never over data); legend entries are de-duplicated by label, in the order they
    were drawn, and a method flagged in one panel only gets one entry, with the audit's sign
    (`flag_label`). Returns the legend (None when nothing is labelled)."""
    fig.suptitle(title)
    fig.tight_layout()
    seen: dict[str, Any] = {}
    flagged: set[str] = set()
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                name = label.removesuffix(FLAG_SIGN)
                seen.setdefault(name, handle)
                if label.endswith(FLAG_SIGN):
                    flagged.add(name)
    if not seen:
        return None
    seen = {flag_label(name, name in flagged): h for name, h in seen.items()}
    bottom = min(ax.get_tightbbox(fig.canvas.get_renderer()).y0 for ax in axes)
    return fig.legend(list(seen.values()), list(seen), loc="upper center",
                      ncol=min(ncol, len(seen)), bbox_to_anchor=(0.5, bottom / fig.bbox.height),
                      bbox_transform=fig.transFigure, frameon=False)


def epoch_axis(ax: Any, epochs: Iterable[int]) -> None:
    """Whole-number epoch ticks (every epoch when there are at most 12), padded so one epoch
    sits in the middle of the panel."""
    eps = sorted({int(e) for e in epochs})
    ax.set_xlabel("epoch")
    if not eps:
        return
    if len(eps) <= 12:
        ax.set_xticks(eps)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lo, hi = eps[0], eps[-1]
    pad = 0.5 if lo == hi else 0.04 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)


# The PNG text chunk every report figure carries: what `figures.remove_stale` may delete.
PNG_TAG = {"Software": "robustlab report"}


def save(fig: Any, path: Path) -> Path:
    """Write `fig` to `path` and close it: atomically, through a new temporary file of a unique
    name (common/files.atomic_write), so a link planted at a fixed temporary name cannot make
    the report write elsewhere."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI,
                                                   bbox_inches="tight", metadata=PNG_TAG))
    finally:
        plt.close(fig)
    return path


def flag_label(method: str, flagged: bool) -> str:
    """The method's name, with the audit's warning sign when one of its evaluations was
    flagged."""
    return f"{method}{FLAG_SIGN}" if flagged else method
