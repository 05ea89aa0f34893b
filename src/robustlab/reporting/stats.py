"""Mean, sample standard deviation and t-distribution confidence intervals (no scipy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Two-sided 95% quantiles t_{0.975, df} for df = 1..30.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_T975_LARGE = ((40, 2.021), (60, 2.000), (120, 1.980))


def t_quantile_975(df: int) -> float:
    """t_{0.975} with `df` degrees of freedom (exact to 3 decimals; interpolated above 30)."""
    if df < 1:
        raise ValueError(f"df: expected >= 1, got {df}")
    if df <= 30:
        return _T975[df - 1]
    prev_df, prev_t = 30, _T975[-1]
    for d, t in _T975_LARGE:
        if df <= d:
            return prev_t + (t - prev_t) * (1 / prev_df - 1 / df) / (1 / prev_df - 1 / d)
        prev_df, prev_t = d, t
    return 1.960 + (prev_t - 1.960) * prev_df / df


@dataclass(frozen=True)
class Summary:
    """n values -> mean, std (sample, ddof=1; None for n=1) and the 95% CI (None for n=1)."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None

    def as_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "std": self.std, "ci95": (
            None if self.ci_low is None else [self.ci_low, self.ci_high])}


def summarize(values: list[float | None]) -> Summary:
    vals = [float(v) for v in values if v is not None]
    n = len(vals)
    if n == 0:
        return Summary(0, None, None, None, None)
    mean = sum(vals) / n
    if n == 1:
        return Summary(1, mean, None, None, None)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)
