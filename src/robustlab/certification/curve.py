"""Certified accuracy vs radius, from CERTIFY's per-sample results."""

from __future__ import annotations

import math
from collections.abc import Sequence

#: The radii (L2, pixel units) whose certified accuracy the summary and the docs quote.
REPORT_RADII: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Spacing of the curve's radius grid (coarser where the largest radius needs it).
CURVE_STEP = 0.01
#: The most points a curve has, whatever the radius: 0-10 at CURVE_STEP.
CURVE_MAX_POINTS = 1001


def certified_accuracy(radii: Sequence[float | None], correct: Sequence[bool], r: float) -> float:
    """Fraction in [0, 1] of all images (abstentions count as failures) that are classified
    correctly with a certified radius >= r. 0.0 for no images."""
    if len(radii) != len(correct):
        raise ValueError(f"certified_accuracy: {len(radii)} radii but {len(correct)} flags")
    if not radii:
        return 0.0
    hits = sum(1 for rad, ok in zip(radii, correct, strict=True)
               if ok and rad is not None and rad >= r)
    return hits / len(radii)


def curve_grid(max_radius: float, step: float = CURVE_STEP) -> list[float]:
    """Radii 0, step, 2 step, ... up to the first grid point >= max(max_radius, 1.0); at most
    CURVE_MAX_POINTS of them (a larger radius gets a coarser step: 0.02, 0.05, 0.1, ...)."""
    top = max(max_radius, REPORT_RADII[-1])
    step = max(step, _round_step(top / (CURVE_MAX_POINTS - 1)))
    count = math.ceil(round(top / step, 9)) + 1
    return [round(i * step, 10) for i in range(count)]


def _round_step(raw: float) -> float:
    """The smallest of 1, 2, 5 x 10^k that is >= `raw` (> 0)."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-12))


def accuracy_curve(radii: Sequence[float | None], correct: Sequence[bool]) -> dict[str, list]:
    """{"radius": grid [R], "certified_accuracy": [R]}; the grid reaches past the largest
    certified radius, so the curve ends at 0."""
    largest = max((r for r in radii if r is not None), default=0.0)
    grid = curve_grid(largest)
    return {"radius": grid, "certified_accuracy": [certified_accuracy(radii, correct, r)
                                                   for r in grid]}


def summarize(radii: Sequence[float | None], correct: Sequence[bool],
              abstain: Sequence[bool]) -> dict[str, object]:
    """Counts and the certified accuracy at `REPORT_RADII` (keys formatted "%g")."""
    n = len(radii)
    certified = [r for r, ok in zip(radii, correct, strict=True) if ok and r is not None]
    return {
        "images": n,
        "abstained": sum(bool(a) for a in abstain),
        "abstain_rate": sum(bool(a) for a in abstain) / n if n else 0.0,
        "correct": len(certified),
        "certified_accuracy_at": {f"{r:g}": certified_accuracy(radii, correct, r)
                                  for r in REPORT_RADII},
        "mean_radius_correct": sum(certified) / len(certified) if certified else None,
        "median_radius_correct": _median(certified),
    }


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
