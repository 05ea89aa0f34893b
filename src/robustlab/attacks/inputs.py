"""What an attack accepts: the checks `Attack.__call__` runs on its inputs and on the model's
first output, once per call and before any compute (each raises `AttackError` naming the
argument, the value and what is expected)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.errors import AttackError
from robustlab.common.inference import first_float_tensor

_PROB_TOL = 1e-4  # rows within this of summing to 1 (and all in [0, 1]) look like probabilities


def _describe(out: Any) -> str:
    """A short description of a model output, for error messages."""
    if isinstance(out, Tensor):
        return f"a {out.dtype} tensor of shape {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        parts = ", ".join(_describe(o) if isinstance(o, Tensor) else type(o).__name__
                          for o in out[:3])
        return f"a {type(out).__name__} of {len(out)} ({parts}{', ...' if len(out) > 3 else ''})"
    if isinstance(out, dict):
        return f"a dict with keys {list(out)[:5]}"
    return f"a {type(out).__name__}"


def check_logits(out: Any, n: int) -> Tensor:
    """`out` if it is a float logits tensor `[n, K]`, else `AttackError` saying what it was."""
    if not (isinstance(out, Tensor) and out.is_floating_point() and out.dim() == 2
            and out.shape[0] == n):
        raise AttackError(
            f"model output: the model must return a float logits tensor of shape [N, K], got "
            f"{_describe(out)} for {n} input(s); wrap it to return the logits only"
        )
    return out


def check_logits_health(logits: Tensor) -> None:
    """Raise `AttackError` if `logits` `[N, K]` has nan/inf; warn if it looks like softmax
    probabilities (all in [0, 1], rows summing to 1 within `_PROB_TOL`). One host sync."""
    if logits.numel() == 0:
        return
    lo, hi, dev = torch.stack([logits.amin(), logits.amax(),  # amin/amax propagate NaN
                               (logits.sum(dim=1) - 1).abs().amax()]).double().tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise AttackError(
            f"model output: the logits of the first forward pass contain nan/inf (range "
            f"[{lo}, {hi}]); attacking such a model measures nothing -- check its weights "
            "and its input normalisation"
        )
    if logits.shape[1] >= 2 and lo >= 0.0 and hi <= 1.0 and dev <= _PROB_TOL:
        warnings.warn(
            "model output: every row of the model's output is in [0, 1] and sums to 1, i.e. "
            "softmax is already applied. Gradients through softmax are masked (they vanish "
            "once it saturates), so gradient attacks are weakened and robustness is "
            "overstated; attacks expect raw logits -- remove the final softmax.",
            RuntimeWarning, stacklevel=4,
        )


_IMAGE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_images(x: Any) -> None:
    """`AttackError` unless `x` is a float tensor `[N, ...]` (N >= 0, >= 2-D) with finite
    values in [0, 1]. One pass over `x` (and a host sync) when N > 0."""
    if not isinstance(x, Tensor):
        hint = (" (use torch.from_numpy(x).float(), scaled to [0, 1])"
                if type(x).__module__ == "numpy" else "")
        raise AttackError(f"x: images must be float tensors in [0, 1], got a "
                          f"{type(x).__module__}.{type(x).__name__}{hint}")
    if x.dtype not in _IMAGE_DTYPES:
        hint = " (for 0-255 images use x.float() / 255)" if not x.is_floating_point() else ""
        raise AttackError(f"x: images must be float tensors in [0, 1] (float32, float64, "
                          f"float16 or bfloat16), got {x.dtype}{hint}")
    if x.dim() < 2:
        raise AttackError(f"x: expected a batch [N, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[0] and x.numel():
        lo, hi = (float(v) for v in torch.aminmax(x))  # one pass; NaN propagates
        if not (0.0 <= lo and hi <= 1.0):
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise AttackError("x: contains non-finite values (nan/inf)")
            raise AttackError(f"x: expected values in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def check_labels(field: str, t: Any, x: Tensor) -> None:
    """`AttackError` naming `field` unless `t` is an integer tensor `[N]` (N = len(x)) of
    labels >= 0 on x's device."""
    if not isinstance(t, Tensor):
        hint = (f" (use torch.from_numpy({field}).long())"
                if type(t).__module__ == "numpy" else "")
        raise AttackError(f"{field}: expected an integer tensor of labels [N], got a "
                          f"{type(t).__module__}.{type(t).__name__}{hint}")
    integer = not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
    if not integer or t.dim() != 1 or t.shape[0] != x.shape[0]:
        raise AttackError(
            f"{field}: expected integer (e.g. int64) labels of shape [{x.shape[0]}] (one per "
            f"input), got "
            f"{t.dtype} of shape {tuple(t.shape)}"
        )
    if t.device != x.device:
        raise AttackError(f"{field}: labels are on {t.device} but x is on {x.device}")
    if t.shape[0] and int(t.min()) < 0:
        raise AttackError(f"{field}: labels must be >= 0, got min {int(t.min())}")


def compute_dtype(model: nn.Module, x: Tensor) -> torch.dtype:
    """The dtype an attack on `model` computes in: that of the model's first floating
    parameter (or buffer), which must be float32 or float64; for a model without any, x's
    dtype, at least float32. (float16 / bfloat16 inputs are fine: they are cast to it.)"""
    t = first_float_tensor(model)
    if t is None:
        return torch.promote_types(x.dtype, torch.float32)
    if t.dtype not in (torch.float32, torch.float64):
        raise AttackError(
            f"model: its parameters are {t.dtype}; attacks compute in the model's "
            "dtype and need float32 or float64 (eps-balls and steps of a few /255 are "
            "lost in a 8-11 bit mantissa): pass model.float(), or use torch.autocast"
        )
    return t.dtype
