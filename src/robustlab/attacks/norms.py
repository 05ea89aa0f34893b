"""Threat-model geometry shared by every attack: Lp norms, projections, steps, random starts.

Every function here works per sample on a batch. Shapes: `x`, `delta`, `grad` are `[N, ...]`
(images `[N, C, H, W]`); `eps` is a tensor broadcastable to `x`, as returned by
`eps_view(eps, x)` (shape `[N, 1, 1, 1]` for images). Norms are measured in pixel units of
images scaled to [0, 1].

Supported norms: `"linf"` (max-abs) and `"l2"` (Euclidean over all of a sample's values);
`"l0"` (the number of PIXELS changed, a pixel of `[N, C, H, W]` images counting once whatever
its channels; `lp_norm`, `project` and `pixel_changes` only: no steps or random starts).
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustlab.attacks.errors import AttackError
from robustlab.attacks.l1 import project_l1, project_l1_box
from robustlab.common.checks import check_pixel_count
from robustlab.common.vocabulary import NORMS

_TINY = 1e-12  # guards divisions by a zero norm


def check_norm(norm: str, *, field: str = "norm") -> str:
    """The canonical spelling of `norm` ("linf" | "l2"); case-insensitive, so torchattacks /
    AutoAttack spellings ("Linf", "L2") are accepted. Otherwise `AttackError` (a ValueError)
    naming the field, the value and the choices."""
    canonical = norm.lower() if isinstance(norm, str) else None
    if canonical not in NORMS:
        raise AttackError(f"{field}: unknown norm {norm!r}; expected one of {', '.join(NORMS)} "
                          "(case-insensitive)")
    return canonical


def check_l0_eps(eps: float | Tensor, *, field: str = "eps") -> None:
    """An l0 `eps` (a float or a per-sample tensor, already finite and >= 0) is a whole number
    of pixels; else `AttackError` naming the field."""
    if isinstance(eps, Tensor):
        bad = eps[eps != eps.round()] if eps.is_floating_point() else eps[:0]
        if bad.numel():
            check_pixel_count(field, float(bad.flatten()[0]), error=AttackError)
        return
    check_pixel_count(field, eps, error=AttackError)


def eps_view(eps: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample `eps` `[N]` to `[N, 1, ..., 1]` so it broadcasts against `x`."""
    return eps.reshape(-1, *([1] * (x.dim() - 1)))


def pixel_changes(delta: Tensor) -> Tensor:
    """Per-pixel size of `delta` `[N, ...]` -> `[N, P]`: for images `[N, C, H, W]` the largest
    |change| over the channels of each of the H*W pixels (a pixel changed in any channel is one
    pixel, as in Sparse-RS's pixel-wise threat model); for other shapes each coordinate."""
    if delta.dim() == 4:
        return delta.abs().amax(dim=1).reshape(delta.shape[0], -1)
    return delta.abs().reshape(delta.shape[0], -1)


def l0_mask(delta: Tensor, eps: Tensor) -> Tensor:
    """Bool mask (broadcastable to `delta`) of the `eps` largest changed pixels of each sample
    (`pixel_changes`; ties: the first); `eps` broadcastable per sample, an integer count."""
    size = pixel_changes(delta)
    order = size.argsort(dim=1, descending=True, stable=True)
    ranks = torch.arange(size.shape[1], device=size.device).expand_as(order).contiguous()
    rank = torch.empty_like(order).scatter_(1, order, ranks)
    keep = (rank < eps.reshape(-1, 1)) & (size > 0)
    shape = (delta.shape[0], 1, *delta.shape[2:]) if delta.dim() == 4 else delta.shape
    return keep.reshape(shape)


def l0_project(delta: Tensor, eps: Tensor) -> Tensor:
    """`delta` with only its `eps` largest pixels (`l0_mask`) kept, the others zeroed: a
    no-op when at most eps pixels change."""
    return torch.where(l0_mask(delta, eps), delta, delta.new_zeros(()))


def lp_norm(delta: Tensor, norm: str) -> Tensor:
    """Per-sample norm of `delta` `[N, ...]` -> `[N]` (float, same dtype as `delta`); "l0" is
    the number of pixels changed (`pixel_changes`)."""
    if norm == "l0":
        return (pixel_changes(delta) > 0).sum(dim=1).to(delta.dtype)
    flat = delta.reshape(delta.shape[0], -1)
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    if norm == "l1":
        return flat.abs().sum(dim=1)
    raise ValueError(f"norm: unknown norm {norm!r}; expected one of {', '.join(NORMS)}")


def project(delta: Tensor, eps: Tensor, norm: str) -> Tensor:
    """Project `delta` onto the `norm` ball of radius `eps` (`eps` broadcastable, >= 0)."""
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, eps), -eps)
    if norm == "l2":
        n = eps_view(lp_norm(delta, "l2"), delta)
        factor = torch.clamp(eps / n.clamp_min(_TINY), max=1.0)
        return delta * factor
    if norm == "l0":
        return l0_project(delta, eps)
    if norm == "l1":  # the exact L1-ball projection (attacks/l1.py)
        return project_l1(delta, eps)
    raise ValueError(f"norm: unknown norm {norm!r}; expected one of {', '.join(NORMS)}")


def steepest_direction(grad: Tensor, norm: str) -> Tensor:
    """Unit-norm steepest-ascent direction for `grad` under `norm`.

    linf: `sign(grad)`; l2: `grad / ||grad||_2` (zero where the gradient is zero).
    """
    if norm == "linf":
        return grad.sign()
    if norm == "l2":
        n = eps_view(lp_norm(grad, "l2"), grad)
        return grad / n.clamp_min(_TINY)
    raise ValueError(f"norm: unknown norm {norm!r}; expected one of {', '.join(NORMS)}")


def random_in_ball(x: Tensor, eps: Tensor, norm: str, generator: torch.Generator) -> Tensor:
    """A random perturbation `delta` (same shape/dtype/layout as `x`) with `||delta|| <= eps`.

    linf: uniform in the cube. l2: Gaussian direction, radius `eps * U` (not uniform in the
    ball: in d = 784 dimensions `U^(1/d)` puts every start on the sphere, and that isotropic
    noise survives the L2 projection; measured by bench/strength_check.py, PGD-L2-40 was then
    0.6-0.8 points weaker than torchattacks' eps * U start, and equal with it). The caller
    still has to clip `x + delta` to [0, 1].
    """
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return ((2 * u - 1) * eps).contiguous(memory_format=layout_of(x))
    if norm == "l2":
        g = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        r = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        direction = g / eps_view(lp_norm(g, "l2"), g).clamp_min(_TINY)
        radius = eps * eps_view(r, g)
        return (direction * radius).contiguous(memory_format=layout_of(x))
    raise ValueError(f"norm: unknown norm {norm!r}; expected one of {', '.join(NORMS)}")


def project_and_clip(x: Tensor, x_adv: Tensor, eps: Tensor, norm: str) -> Tensor:
    """The point of the `norm` ball around `x` (radius `eps`) ∩ [0, 1]^d reached from `x_adv`.

    Projects `x_adv - x` onto the ball, then clips to [0, 1]. Clipping only moves coordinates
    towards `x` (which lies in [0, 1]), so the result stays inside the ball. l1: the exact
    projection onto the ball ∩ the box (`attacks/l1.py`), kept in `x_adv`'s layout.
    """
    if norm == "l1":
        return project_l1_box(x, x_adv, eps).contiguous(memory_format=layout_of(x_adv))
    return (x + project(x_adv - x, eps, norm)).clamp_(0.0, 1.0)


def linf_box(x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel bounds `(lo, hi)` of the Linf ball around `x` intersected with [0, 1], so that
    projecting onto it is the single op `torch.clamp(x_adv, lo, hi)`."""
    return (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)


def layout_of(x: Tensor) -> torch.memory_format:
    """`torch.channels_last` for a 4-D tensor stored channels-last (and not also plainly
    contiguous), else `torch.contiguous_format`."""
    cl = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if cl and not x.is_contiguous() else torch.contiguous_format
