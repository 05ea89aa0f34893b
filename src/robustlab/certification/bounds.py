"""The statistics of CERTIFY (Cohen, Rosenfeld & Kolter 2019): the one-sided Clopper-Pearson
lower confidence bound on a binomial proportion and the certified L2 radius.

No SciPy: the bound is the `alpha` quantile of the Beta(k, n - k + 1) distribution, found by
bisection on its CDF, the regularized incomplete beta function `I_x(a, b)`, which is evaluated
by its continued fraction (modified Lentz method). The standard normal quantile comes from
`statistics.NormalDist`. tests/test_certification.py checks both against closed forms and,
where SciPy is installed, against `scipy.stats.beta.ppf`.
"""

from __future__ import annotations

import math
from statistics import NormalDist

_TINY = 1e-300
_CF_TOL = 1e-15
_CF_MAX_TERMS = 100_000
_BISECT_TOL = 1e-15


def _continued_fraction(a: float, b: float, x: float) -> float:
    """1 / (1 + d1 / (1 + d2 / (1 + ...))) with the coefficients of I_x(a, b):
    d_{2m+1} = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)), d_{2m} = m(b-m)x / ((a+2m-1)(a+2m)).
    Converges quickly for x < (a + 1) / (a + b + 2)."""
    f = c = _TINY  # b0 = 0; Lentz's start
    d = 0.0
    for j in range(1, _CF_MAX_TERMS):
        m = (j - 1) // 2
        if j == 1:
            coef = 1.0
        elif j % 2 == 0:  # d_{2m+1}, j = 2m + 2
            coef = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:  # d_{2m}, j = 2m + 1 with m >= 1
            coef = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + coef * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + coef / c
        c = c if abs(c) > _TINY else _TINY
        f *= c * d
        if abs(c * d - 1.0) < _CF_TOL:
            return f
    raise ArithmeticError(f"incomplete beta: no convergence for a={a}, b={b}, x={x}")


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) = P(Beta(a, b) <= x), a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (a * math.log(x) + b * math.log1p(-x)
                 - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(b, a, 1.0 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    """The x in [0, 1] with I_x(a, b) = q (bisection to within 1e-15), for q in (0, 1)."""
    lo, hi = 0.0, 1.0
    while hi - lo > _BISECT_TOL:
        mid = 0.5 * (lo + hi)
        if beta_cdf(mid, a, b) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) lower confidence bound on p from k successes in n Bernoulli(p)
    trials: the alpha quantile of Beta(k, n - k + 1), 0 when k = 0. (Cohen et al.'s
    `proportion_confint(k, n, alpha=2 * alpha, method="beta")[0]`.)"""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"clopper_pearson_lower: expected 0 <= k <= n and n >= 1, got k={k}, "
                         f"n={n}")
    if k == 0:
        return 0.0
    if k == n:  # closed form: P(X >= n) = p^n = alpha
        return alpha ** (1.0 / n)
    return beta_quantile(alpha, float(k), float(n - k + 1))


def clopper_pearson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided exact (Clopper-Pearson) `confidence` interval on p from k successes in n
    Bernoulli(p) trials: the alpha/2 quantile of Beta(k, n - k + 1) and the 1 - alpha/2 quantile
    of Beta(k + 1, n - k), alpha = 1 - confidence; 0 when k = 0, 1 when k = n (the benchmark's
    accuracy intervals, docs/benchmark.md)."""
    if not 0 <= k <= n or n < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"clopper_pearson_interval: expected 0 <= k <= n, n >= 1 and a "
                         f"confidence in (0, 1), got k={k}, n={n}, confidence={confidence}")
    half = (1.0 - confidence) / 2.0
    low = 0.0 if k == 0 else beta_quantile(half, float(k), float(n - k + 1))
    high = 1.0 if k == n else beta_quantile(1.0 - half, float(k + 1), float(n - k))
    return low, high


def certified_radius(p_lower: float, sigma: float) -> float | None:
    """The certified L2 radius sigma * Phi^-1(p_lower) (pixel units), None (abstain) unless
    p_lower > 0.5."""
    if p_lower <= 0.5:
        return None
    return sigma * NormalDist().inv_cdf(p_lower)


def max_certifiable_radius(n: int, alpha: float, sigma: float) -> float:
    """The largest radius CERTIFY can return with n samples: every sample votes for the top
    class, p_lower = alpha^(1/n)."""
    radius = certified_radius(clopper_pearson_lower(n, n, alpha), sigma)
    return 0.0 if radius is None else radius
