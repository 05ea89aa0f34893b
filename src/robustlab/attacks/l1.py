"""L1 threat-model geometry (Croce & Hein 2021, "Mind the box: l1-APGD for sparse adversarial
attacks on image classifiers"): the exact projection onto the L1 ball intersected with the
[0, 1] box, the random start, and the sparse steepest-ascent direction of APGD-L1.

The L1 ball alone is the wrong set for images: its projection followed by clipping to [0, 1]
wastes budget on coordinates the box cuts off, and its steepest direction (one coordinate)
is useless where that coordinate sits at 0 or 1. So:

- `project_l1_box(x, v, eps)`: the Euclidean projection of `v` onto
  `{z : ||z - x||_1 <= eps, 0 <= z <= 1}`. With `w = v - x` and `cap_i` the room of
  coordinate i towards the sign of `w_i` (`1 - x_i` or `x_i`), the KKT conditions give
  `z_i - x_i = sign(w_i) * min(max(|w_i| - lam, 0), cap_i)` with the smallest `lam >= 0`
  making the L1 norm <= eps. That norm, as a function of `lam`, is piecewise linear and
  non-increasing with breakpoints `max(|w_i| - cap_i, 0)` (slope -1 more) and `|w_i|` (slope
  +1); sorting the 2d breakpoints and accumulating the slopes finds `lam` exactly (the
  original `L1_projection` of the AutoAttack code does the same with a bisection over the
  sorted breakpoints). Written here from that derivation.
- `l1_random_start`: `x + t` (t standard Gaussian) projected onto the ball and the box, as
  the original APGD-L1 starts.
- `l1_sparse_direction(grad, topk)`: the signs of the `topk * d` largest-magnitude gradient
  coordinates (ties at the threshold included), scaled to unit L1 norm; APGD-L1 adapts the
  fraction `topk` to the sparsity of its best point.

Torch-only and free of the other attack modules (attacks/norms.py dispatches its "l1" cases
here). Shapes: `x`, `v`, `grad` `[N, ...]`; `eps` a float or a tensor with one value per
sample (`[N]` or `[N, 1, ..., 1]`).
"""

from __future__ import annotations

import torch
from torch import Tensor

_TINY = 1e-10  # the original's guard of the direction's normalisation


def _per_sample(eps: float | Tensor, n: int, like: Tensor) -> Tensor:
    """`eps` as a `[N]` tensor of `like`'s dtype and device."""
    e = torch.as_tensor(eps, dtype=like.dtype, device=like.device).reshape(-1)
    return e.expand(n) if e.numel() == 1 else e


def l1_norm(delta: Tensor) -> Tensor:
    """Per-sample L1 norm `[N]`."""
    return delta.reshape(delta.shape[0], -1).abs().sum(dim=1)


def l0_count(delta: Tensor) -> Tensor:
    """Per-sample number of non-zero coordinates `[N]` (in `delta`'s dtype)."""
    return delta.reshape(delta.shape[0], -1).ne(0).sum(dim=1).to(delta.dtype)


def shrink_magnitudes(a: Tensor, cap: Tensor, eps: Tensor) -> Tensor:
    """Per row of `a` `[N, d]` (>= 0): `m = min(max(a - lam, 0), cap)` with the smallest
    `lam >= 0` such that `m.sum() <= eps` `[N]` (the magnitudes of the projection)."""
    full = torch.minimum(a, cap)
    total = full.sum(dim=1)
    need = total > eps
    if not bool(need.any()):
        return full
    rows = need.nonzero().flatten()
    ar, cr, er, tr = a[rows], cap[rows], eps[rows], total[rows]
    points = torch.cat(((ar - cr).clamp_min(0.0), ar), dim=1)
    slopes = torch.cat((-torch.ones_like(ar), torch.ones_like(ar)), dim=1)
    t, order = points.sort(dim=1)
    s = slopes.gather(1, order).cumsum(dim=1)  # slope of the norm right after each point
    f = torch.cat((tr[:, None], tr[:, None] + (s[:, :-1] * t.diff(dim=1)).cumsum(dim=1)), 1)
    j = ((f > er[:, None]).sum(dim=1) - 1).clamp(0, t.shape[1] - 2)[:, None]
    lam = t.gather(1, j) + (f.gather(1, j) - er[:, None]) / (-s.gather(1, j)).clamp_min(1.0)
    lam = torch.minimum(lam.clamp_min(0.0), t[:, -1:])
    m = torch.minimum((ar - lam).clamp_min(0.0), cr)
    # rounding of the accumulated sums may leave the norm a hair above eps: scale it back
    over = m.sum(dim=1)
    m = m * torch.where(over > er, er / over.clamp_min(1e-30), torch.ones_like(over))[:, None]
    out = full.clone()
    out[rows] = m
    return out


def project_l1_box(x: Tensor, v: Tensor, eps: float | Tensor) -> Tensor:
    """The Euclidean projection of `v` onto the L1 ball of radius `eps` around `x` (in
    [0, 1]) intersected with [0, 1]^d; same shape and dtype as `x`, contiguous.

    Computed in float64, then rounded to `x`'s dtype towards `x` where rounding to nearest
    would lengthen a coordinate's move: each `|z_i - x_i|` is at most its exact magnitude, so
    the L1 norm stays within eps in exact arithmetic (rounding errors of d coordinates would
    otherwise add up to d/2 ulps)."""
    n = x.shape[0]
    xf = x.reshape(n, -1)
    x64 = xf.double()
    w = v.reshape(n, -1).double() - x64
    cap = torch.where(w > 0, 1.0 - x64, x64).clamp_min(0.0)
    m = shrink_magnitudes(w.abs(), cap, _per_sample(eps, n, x64))
    z = (x64 + w.sign() * m).clamp(0.0, 1.0)
    out = z.to(x.dtype)
    longer = (out.double() - x64).abs() > m
    out = torch.where(longer, torch.nextafter(out, xf), out)
    return out.reshape(x.shape)


def project_l1(delta: Tensor, eps: float | Tensor) -> Tensor:
    """`delta` projected onto the L1 ball of radius `eps` (no box)."""
    n = delta.shape[0]
    w = delta.reshape(n, -1).double()
    a = w.abs()
    m = shrink_magnitudes(a, a, _per_sample(eps, n, w))
    out = m.to(delta.dtype)  # rounded towards 0 where rounding to nearest lengthens it
    out = torch.where(out.double() > m, torch.nextafter(out, torch.zeros_like(out)), out)
    return (w.sign().to(delta.dtype) * out).reshape(delta.shape)


def l1_random_start(x: Tensor, eps: float | Tensor, generator: torch.Generator) -> Tensor:
    """APGD-L1's start: `x + t`, `t` standard Gaussian, projected onto the ball and the box."""
    t = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return project_l1_box(x, x + t, eps)


def l1_sparse_direction(grad: Tensor, topk: Tensor) -> Tensor:
    """The unit-L1 steepest-ascent direction restricted to the `topk` `[N]` fraction of the
    largest-magnitude coordinates: `sign(g_i)` where `|g_i|` reaches the threshold (the
    `(1 - topk) * d`-th smallest magnitude), divided by the count of such non-zero signs."""
    n = grad.shape[0]
    g = grad.reshape(n, -1)
    d = g.shape[1]
    k = ((1.0 - topk) * d).clamp(0, d - 1).long()
    threshold = g.abs().sort(dim=1).values.gather(1, k[:, None])
    signs = torch.where(g.abs() >= threshold, g.sign(), torch.zeros_like(g))
    return (signs / (signs.abs().sum(dim=1, keepdim=True) + _TINY)).reshape(grad.shape)
