"""Heat maps of a transfer study (a robustlab.transfer/1 dict; docs/transfer.md): one panel
per attack, rows = source models (+ the leave-one-out ensemble), columns = target models,
each cell the target's accuracy (%) on the source's adversarial examples.

Reads the dict only (no torch). Colour map: cividis (sequential, colour-blind safe, readable in
grey); dark = low accuracy = the attack transfers. The figure is as wide as every report
figure (plot_style.FIG_WIDTH) and grows in height with the number of models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from robustlab.reporting.plot_style import FIG_WIDTH, NOTE_SIZE, RC, save

CMAP = "cividis"
ENSEMBLE_LABEL = "ensemble of others"
# The figure is FIG_WIDTH wide (plot_style): the attacks' panels side by side when each cell
# is at least MIN_CELL inches wide there, else one under the other; ROW_HEIGHT a matrix row.
MIN_CELL, ROW_HEIGHT = 0.45, 0.32


def attack_order(data: dict[str, Any]) -> list[str]:
    """The attacks in the order the study ran them (the file's `attacks` keys are sorted)."""
    ran = [a for a in data.get("settings", {}).get("attacks", []) if a in data["attacks"]]
    return ran + [a for a in data["attacks"] if a not in ran]


def rows_of(block: dict[str, Any], models: list[str]) -> tuple[list[str], list[list[float]]]:
    """(row labels, values in %) of one attack's matrix, the ensemble row last if present."""
    labels = list(models)
    values = [[100 * v for v in row] for row in block["matrix"]]
    if block.get("ensemble") is not None:
        labels.append(ENSEMBLE_LABEL)
        values.append([100 * v for v in block["ensemble"]])
    return labels, values


def _text_color(value: float) -> str:
    """Black on the light (yellow, high) end of cividis, white on the dark end."""
    return "black" if value >= 55 else "white"


def _panel(ax: Any, block: dict[str, Any], models: list[str], attack: str,
           first: bool = True) -> Any:
    """One attack's heat map on `ax` (row labels on the `first` panel only: every panel has
    the same rows); returns the image (for the colour bar)."""
    labels, values = rows_of(block, models)
    image = ax.imshow(values, cmap=CMAP, vmin=0, vmax=100, aspect="auto")
    size = RC["xtick.labelsize"] if len(models) <= 6 else NOTE_SIZE
    for r, row in enumerate(values):
        for c, v in enumerate(row):
            weight = "bold" if r == c else "normal"
            ax.text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=size,
                    color=_text_color(v), fontweight=weight)
    ax.set_xticks(range(len(models)))
    long = max(len(m) for m in models) > 8 or len(models) > 4
    ax.set_xticklabels(models, rotation=35 if long else 0, ha="right" if long else "center")
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels if first else [])
    if block.get("ensemble") is not None:
        ax.axhline(len(models) - 0.5, color="white", lw=2.5)
    ax.set_xlabel("target (evaluated model)")
    if first:
        ax.set_ylabel("source (crafted on)")
    ax.set_title(f"{attack}: target accuracy (%)")
    return image


def transfer_figure(data: dict[str, Any]) -> Any:
    """The heat maps of a transfer dict, one shared colour bar, FIG_WIDTH wide: side by side
    when their cells are wide enough (`MIN_CELL`), else one under the other; a Figure."""
    models, attacks = data["models"], attack_order(data)
    k = len(models)
    longest = max(len(m) for m in models + [ENSEMBLE_LABEL])
    room = FIG_WIDTH - (0.6 + 0.075 * longest) - 1.3  # less the row labels and colour bar
    cols = len(attacks) if room / (len(attacks) * k) >= MIN_CELL else 1
    rows = -(-len(attacks) // cols)
    height = 1.2 + 0.06 * longest + ROW_HEIGHT * (k + 1)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(rows, cols, squeeze=False,
                                 figsize=(FIG_WIDTH, max(3.0, height * rows)))
        images = [_panel(ax, data["attacks"][a], models, a, first=i % cols == 0)
                  for i, (ax, a) in enumerate(zip(axes.flat, attacks, strict=True))]
        s = data["settings"]
        fig.suptitle(f"Transfer of adversarial examples: {s['norm']} eps = {s['eps']:g}, "
                     f"{s['steps']} steps, {s['images']} test images")
        fig.tight_layout(rect=(0, 0, 0.95, 1))  # room for the colour bar's label
        bar = fig.colorbar(images[-1], ax=list(axes.flat), fraction=0.035, pad=0.03)
        bar.set_label("target accuracy (%)")
    return fig


def write_transfer_figure(data: dict[str, Any], path: str | Path) -> Path:
    """Draw `transfer_figure(data)` and write it to `path` as PNG (atomically)."""
    with plt.rc_context(RC):
        return save(transfer_figure(data), Path(path))
