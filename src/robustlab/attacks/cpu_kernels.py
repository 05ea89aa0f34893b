"""Faster CPU kernels for two layers every MNIST-style CNN has, used only inside attacks.

An attack's cost is its input-gradient passes (`AttackModel.gradient`). On the CPU two of
oneDNN's kernels in that pass are far off the machine's speed (measured by
`bench/floor_breakdown.py`, batch 256, 2 threads):

- the input gradient of a convolution with ONE input channel (the first layer on grey-scale
  images) is a transposed convolution with a single output channel -- on LeNet-5 it took
  more time than all other convolutions together. Written as a depthwise convolution of the
  output gradient with the flipped kernels followed by a sum over channels, it is the same
  sum of products, in 0.3-0.6x the time (`bench/floor_breakdown.py`);
- `max_pool2d` 2x2 / stride 2 on NCHW inputs finds its maxima and int64 indices in a slow
  loop; three `torch.maximum` calls on strided views give the same values several times
  faster, and a few comparisons give the same indices (each window's FIRST maximum in
  row-major order, ties included), which ATen's own max-pool backward then uses. Forward +
  backward are faster from ~0.25M elements on; smaller tensors keep the native kernel.

`CPUKernels` is a `TorchFunctionMode` that swaps these in for `F.conv2d` / `F.max_pool2d`
calls that match exactly (anything else runs unchanged), so user models need no change and
are never modified. Values are bit-identical for the pool and equal to ~1e-7 relative for
the convolution gradient (a different summation order); tests compare both against PyTorch
over random shapes. The mode is entered only around CPU forward passes of an attack, where
the parameters are frozen (the convolution rule needs that: it returns no weight gradient).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
              "return_indices")
_POOL_DEFAULTS = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                  "return_indices": False}
_WINDOW = ((0, 0), (0, 1), (1, 0), (1, 1))  # row-major: max_pool2d's tie order
# Below ~0.25M elements the native pool is as fast or faster (bench/kernel_speed.py), e.g.
# once an attack's active set has shrunk.
POOL_MIN_NUMEL = 1 << 18
# The depthwise form of the 1-channel convolution's input gradient loses once the output
# channels outnumber twice the kernel's taps (64 channels at 3x3: bench/kernel_speed.py).
CONV_MAX_CHANNELS_PER_TAP = 2
# ... and is no faster on inputs under ~16K elements (e.g. 16 images of 28x28, 3x3 kernels).
CONV_MIN_NUMEL = 1 << 14


def _bind(names: tuple[str, ...], args: tuple, kwargs: dict, defaults: dict) -> dict:
    bound = dict(defaults)
    bound.update(zip(names, args, strict=False))  # trailing parameters may be defaulted
    bound.update(kwargs)
    return bound


def _pair(v: Any) -> tuple[int, int] | None:
    """(a, b) for an int or a 2-sequence of ints, else None (e.g. padding='same')."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return (int(v[0]), int(v[1]))
    return None


class _OneChannelConvInputGrad(torch.autograd.Function):
    """conv2d (stride 1, 1 input channel) whose backward is depthwise conv + channel sum."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int]):
        ctx.save_for_backward(weight)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        (weight,) = ctx.saved_tensors
        c, _, kh, kw = weight.shape
        ph, pw = ctx.padding
        flipped = weight.flip(2, 3)  # [C, 1, kh, kw]: one kernel per output channel
        per_channel = F.conv2d(grad_out, flipped, padding=(kh - 1 - ph, kw - 1 - pw), groups=c)
        return per_channel.sum(1, keepdim=True), None, None, None


def _windows(x: Tensor, h: int, w: int) -> list[Tensor]:
    """The four strided views of `x` `[..., 2h(+1), 2w(+1)]` holding each 2x2 window's cells."""
    return [x[..., i : 2 * h : 2, j : 2 * w : 2] for i, j in _WINDOW]


def _pool2x2(x: Tensor) -> Tensor:
    a, b, c, d = _windows(x, x.shape[-2] // 2, x.shape[-1] // 2)
    return torch.maximum(torch.maximum(a, b), torch.maximum(c, d))


class _MaxPool2x2(torch.autograd.Function):
    """Forward from strided maxima; backward is ATen's own max-pool backward, fed the flat
    indices (into H*W) of each window's FIRST maximum in row-major order -- the indices
    `max_pool2d` itself would have returned, ties included."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        width = x.shape[-1]
        h, w = x.shape[-2] // 2, width // 2
        a, b, c, d = _windows(x, h, w)
        top, bottom = torch.maximum(a, b), torch.maximum(c, d)
        corner = (torch.arange(h, device=x.device) * (2 * width)).view(h, 1) \
            + torch.arange(w, device=x.device) * 2  # flat index of each window's (0, 0) cell
        # strict comparisons: on a tie the earlier cell (a before b, top row before bottom) wins
        index = torch.where(bottom > top, (d > c).long() + width, (b > a).long())
        index += corner
        ctx.save_for_backward(x, index)
        return torch.maximum(top, bottom)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> Tensor:
        x, index = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad_out.contiguous(), x, [2, 2], [2, 2], [0, 0], [1, 1], False, index)


class CPUKernels(TorchFunctionMode):
    """Swap in the faster kernels above for matching `F.conv2d` / `F.max_pool2d` calls."""

    @staticmethod
    def may_apply(model: nn.Module) -> bool:
        """Whether `model` has a layer these kernels could take over (a 1-input-channel
        Conv2d or a 2x2 MaxPool2d). Models without one skip the mode and its per-op Python
        dispatch; a purely functional F.conv2d / F.max_pool2d then keeps PyTorch's kernel."""
        return any((isinstance(m, nn.Conv2d) and m.in_channels == 1)
                   or (isinstance(m, nn.MaxPool2d) and _pair(m.kernel_size) == (2, 2))
                   for m in model.modules())

    @staticmethod
    def when(on: bool) -> AbstractContextManager:
        """`CPUKernels()` if `on`, else a context that does nothing."""
        return CPUKernels() if on else nullcontext()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d:
            fast = _one_channel_conv(args, kwargs)
            if fast is not None:
                return fast
        elif func is F.max_pool2d:
            fast = _max_pool_2x2(args, kwargs)
            if fast is not None:
                return fast
        return func(*args, **kwargs)


def _one_channel_conv(args: tuple, kwargs: dict) -> Tensor | None:
    a = _bind(_CONV_ARGS, args, kwargs, {"bias": None, "stride": 1, "padding": 0,
                                         "dilation": 1, "groups": 1})
    x, weight, bias = a["input"], a["weight"], a["bias"]
    padding = _pair(a["padding"])
    if not (
        isinstance(x, Tensor) and x.dim() == 4 and x.device.type == "cpu" and x.requires_grad
        and isinstance(weight, Tensor) and weight.dim() == 4 and weight.shape[1] == 1
        and not weight.requires_grad and (bias is None or not bias.requires_grad)
        and a["groups"] == 1 and _pair(a["stride"]) == (1, 1)
        and _pair(a["dilation"]) == (1, 1) and padding is not None
        and 0 <= padding[0] < weight.shape[2] and 0 <= padding[1] < weight.shape[3]
        and weight.shape[0] <= CONV_MAX_CHANNELS_PER_TAP * weight.shape[2] * weight.shape[3]
        and x.numel() >= CONV_MIN_NUMEL
    ):
        return None
    return _OneChannelConvInputGrad.apply(x, weight, bias, padding)


def _max_pool_2x2(args: tuple, kwargs: dict) -> Tensor | None:
    a = _bind(_POOL_ARGS, args, kwargs, _POOL_DEFAULTS)
    x = a["input"]
    if not (
        isinstance(x, Tensor) and x.dim() == 4 and x.device.type == "cpu"
        and x.is_floating_point() and x.is_contiguous()
        and _pair(a["kernel_size"]) == (2, 2) and a["stride"] in (None, 2, (2, 2), [2, 2])
        and _pair(a["padding"]) == (0, 0) and _pair(a["dilation"]) == (1, 1)
        and not a["ceil_mode"] and not a["return_indices"]
        and x.shape[-2] >= 2 and x.shape[-1] >= 2 and x.numel() >= POOL_MIN_NUMEL
    ):
        return None
    if x.requires_grad and torch.is_grad_enabled():
        return _MaxPool2x2.apply(x)
    return _pool2x2(x)
