"""`check_model_on_data`: a user's model run once on a few images of the data, before any
compute, so that a model robustlab cannot use is refused with one line instead of a traceback
(or, worse, a number) from deep inside an evaluation or a training run.

`robustlab.evaluate`, `robustlab evaluate --model` and `robustlab.train` call it with the
same messages. It checks, on the first `PROBE_SIZE` images: the parameters are float32 or
float64; the forward pass runs; the output is a float tensor `[n, K]` (not a tuple, dict or
1-D tensor) with K == the data's number of classes (`exact`) or K >= it; the logits are
finite (half-precision logits are accepted with a `RuntimeWarning`, as the attacks accept
them); optionally that they depend on the input (a constant model measures nothing) and that
they are differentiable with respect to it (gradient attacks need that). The model runs in
eval mode and under a forked RNG, so the probe changes no mode, buffer or random number of
what follows.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.common.inference import first_float_tensor
from robustlab.common.modes import eval_mode
from robustlab.models.user import UserModelError

PROBE_SIZE = 4  # images in the one batch the model is checked on
_SHIFT = 0.5  # the "other input" of the dependence check: every pixel moved by this (mod 1)


def check_model_on_data(model: nn.Module, x: Tensor, *, num_classes: int | None = None,
                        exact: bool = False, depends_on_x: bool = False,
                        needs_gradient: bool = False) -> int:
    """Run `model` on the first `PROBE_SIZE` images of `x` and return K (its logits' width).

    Raises `UserModelError` (one line: "model: ..." or "model output: ...") for parameters
    that are not float32/float64, a forward pass that fails, an output that is not a float
    logits tensor `[n, K]`, K != `num_classes` (`exact`) or K < `num_classes`, non-finite
    logits; with `depends_on_x`, logits that do not change when every pixel changes; with
    `needs_gradient`, logits not differentiable with respect to the input (unless the model
    declares `nondifferentiable = True`: attacks then use its `bpda_forward`)."""
    dtype, device = _parameter_dtype_and_device(model, x)
    batch = x[:PROBE_SIZE].to(device=device, dtype=dtype)
    if len(batch) == 0:
        return 0
    grad = needs_gradient and not getattr(model, "nondifferentiable", False)
    with eval_mode(model), _forked_rng(device), torch.set_grad_enabled(grad):
        batch = batch.detach().requires_grad_(grad)
        out = _forward(model, batch)
        k = _check_logits(out, len(batch), num_classes, exact)
        if depends_on_x:
            _check_depends_on_input(model, batch.detach(), out.detach())
        if grad:
            _check_differentiable(out, batch)
    return k


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype to give `model` its images in: float64 for a float64 model, else float32."""
    t = first_float_tensor(model)
    return torch.float64 if t is not None and t.dtype == torch.float64 else torch.float32


def _parameter_dtype_and_device(model: nn.Module, x: Tensor) -> tuple[torch.dtype, Any]:
    """The dtype and device the model computes in: those of its first floating parameter or
    buffer (x's for a model without any). Half precision is refused."""
    t = first_float_tensor(model)
    if t is None:
        return x.dtype, x.device
    if t.dtype not in (torch.float32, torch.float64):
        raise UserModelError(
            f"model: its parameters are {t.dtype}; expected float32 or float64 (attacks "
            "and training steps of a few /255 are lost in a half-precision mantissa): "
            "pass model.float(); for mixed precision use torch.autocast / amp")
    return t.dtype, t.device


def _forked_rng(device: Any) -> Any:
    """The probe draws no random number the evaluation or training would have drawn."""
    cuda = [device] if getattr(device, "type", None) == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


def _forward(model: nn.Module, batch: Tensor) -> Any:
    try:
        return model(batch)
    except Exception as err:
        lines = str(err).strip().splitlines()
        text = f": {lines[0][:300]}" if lines else ""
        raise UserModelError(
            f"model: the forward pass on {len(batch)} images of shape "
            f"{list(batch.shape)} ({batch.dtype}, {batch.device}) failed with "
            f"{type(err).__name__}{text}") from err


def _describe(out: Any) -> str:
    if isinstance(out, Tensor):
        return f"a {out.dtype} tensor of shape {list(out.shape)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items"
    if isinstance(out, dict):
        return f"a dict with keys {list(out)[:5]}"
    return f"a {type(out).__name__}"


def _check_logits(out: Any, n: int, num_classes: int | None, exact: bool) -> int:
    """K, if `out` is finite float logits `[n, K]` of the right width."""
    if not (isinstance(out, Tensor) and out.dim() == 2 and out.shape[0] == n
            and out.is_floating_point()):
        hint = ("; return the logits only (e.g. out[0] or out['logits'])"
                if isinstance(out, (tuple, list, dict)) else "")
        raise UserModelError(
            f"model output: expected a float logits tensor of shape [{n}, K] for {n} images, "
            f"got {_describe(out)}{hint}")
    k = int(out.shape[1])
    if k < 2:
        raise UserModelError(f"model output: expected at least 2 logits per image (one per "
                             f"class), got shape {list(out.shape)}")
    if num_classes is not None and (k != num_classes if exact else k < num_classes):
        need = f"[N, {num_classes}]" if exact else f"[N, K] with K >= {num_classes}"
        raise UserModelError(f"model output: {k} logits per image, but the data has "
                             f"{num_classes} classes (labels 0 to {num_classes - 1}); expected "
                             f"{need} (a model built for other data?)")
    finite = torch.isfinite(out.detach())
    if not bool(finite.all()):
        raise UserModelError(f"model output: the logits of the first {n} images contain "
                             f"nan/inf ({int((~finite).sum())} of {out.numel()} values); check "
                             "the weights and the input normalisation")
    _warn_low_precision(out)
    return k


def _warn_low_precision(out: Tensor) -> None:
    """Half-precision logits are accepted, as the attacks accept them (`attacks.inputs.
    check_logits`), with a warning: their losses and gradients carry ~3 significant digits."""
    if out.dtype in (torch.float16, torch.bfloat16):
        warnings.warn(
            f"model output: the logits are {out.dtype}; attacks compute their losses and "
            "gradients from them at that precision (about 3 significant digits), which can "
            "weaken them; return float32 logits (e.g. out.float() in forward)",
            RuntimeWarning, stacklevel=2)


def _check_depends_on_input(model: nn.Module, batch: Tensor, out: Tensor) -> None:
    with torch.no_grad():
        other = _forward(model, torch.remainder(batch + _SHIFT, 1.0))
    if isinstance(other, Tensor) and other.shape == out.shape and torch.equal(other, out):
        raise UserModelError(
            f"model output: the logits do not depend on the input (the same for {len(batch)} "
            f"images and for those images with every pixel moved by {_SHIFT}); attacking such "
            "a model measures nothing -- check that forward() uses its argument")


def _check_differentiable(out: Tensor, batch: Tensor) -> None:
    grad = None
    if out.requires_grad:
        (grad,) = torch.autograd.grad(out.sum(), batch, allow_unused=True)
    if grad is None:
        raise UserModelError(
            "model output: the logits are not differentiable with respect to the input "
            "(detached, computed under torch.no_grad or outside torch); gradient-based "
            "attacks need d logits / d x: keep the graph, or declare nondifferentiable = True "
            "with a bpda_forward(x) (see docs/defenses.md)")


def check_model_for_training(model: nn.Module | None, splits: Any) -> None:
    """`robustlab.train`'s check of the user's own model (None: a registered one, skipped)
    on one batch of the training split (`splits`: `DatasetSplits`; None when a registered
    dataset is loaded later): float32/float64 parameters, a forward pass that runs, finite
    float logits `[N, K]` with K >= the data's classes. No dependence check: a freshly
    initialised model with a zero-initialised head is constant and still trains."""
    if model is None or splits is None:
        return
    check_model_on_data(model, splits.train.x, num_classes=splits.info.num_classes)
