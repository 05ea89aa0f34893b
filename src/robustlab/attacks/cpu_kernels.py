"""Faster CPU kernels for two layers every MNIST-style CNN has, used only inside attacks.

An attack's cost is its input-gradient passes (`AttackModel.gradient`). On the CPU two of
oneDNN's kernels in that pass are far off the machine's speed (measured by
`bench/floor_breakdown.py`, batch 256, 2 threads):

- the input gradient of a convolution with ONE input channel (the first layer on grey-scale
  images) is a transposed convolution with a single output channel -- on LeNet-5 it took
  more time than all other convolutions together. Written as a depthwise convolution of the
  output gradient with the flipped kernels followed by a sum over channels, it is the same
  sum of products, in 0.3-0.6x the time (`bench/floor_breakdown.py`);
- `max_pool2d` 2x2 / stride 2 on NCHW inputs computes int64 indices in a slow scalar loop;
  three `torch.maximum` calls on strided views give the same values ~7x faster, and the
  backward sends each window's gradient to its FIRST maximum in row-major order, exactly
  where `max_pool2d` sends it (ties included); forward + backward together are 13-20 %
  faster on tensors of 1M+ elements, so smaller ones keep the native kernel.

`CPUKernels` is a `TorchFunctionMode` that swaps these in for `F.conv2d` / `F.max_pool2d`
calls that match exactly (anything else runs unchanged), so user models need no change and
are never modified. Values are bit-identical for the pool and equal to ~1e-7 relative for
the convolution gradient (a different summation order); tests compare both against PyTorch
over random shapes. The mode is entered only around CPU forward passes of an attack, where
the parameters are frozen (the convolution rule needs that: it returns no weight gradient).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
              "return_indices")
_POOL_DEFAULTS = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                  "return_indices": False}
_WINDOW = ((0, 0), (0, 1), (1, 0), (1, 1))  # row-major: max_pool2d's tie order
# Below ~1M elements the native pool is as fast or faster (measured: 0.4M elements par,
# 0.02M 3x slower, 1.2M-6.4M 13-20 % faster), e.g. once an attack's active set has shrunk.
POOL_MIN_NUMEL = 1 << 20


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
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = _pool2x2(x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> Tensor:
        x, out = ctx.saved_tensors
        h, w = out.shape[-2:]
        exact = x.shape[-2] == 2 * h and x.shape[-1] == 2 * w
        grad = (torch.empty_like if exact else torch.zeros_like)(
            x, memory_format=torch.contiguous_format)
        zero = grad_out.new_zeros(())
        taken: Tensor | None = None  # windows whose maximum an earlier cell already claimed
        cells = zip(_windows(x, h, w), _windows(grad, h, w), strict=True)
        for k, (cell, cell_grad) in enumerate(cells):
            if k == 3:
                hit = ~taken
            else:
                hit = cell == out
                if taken is None:
                    taken = hit
                else:
                    hit = hit & ~taken
                    taken = taken | hit
            torch.where(hit, grad_out, zero, out=cell_grad)
        return grad


class CPUKernels(TorchFunctionMode):
    """Swap in the faster kernels above for matching `F.conv2d` / `F.max_pool2d` calls."""

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
        # measured: the depthwise form loses when channels outnumber 2x the kernel's taps
        # (1.3x slower at 64 channels, 3x3); it wins 1.2-3.7x below that
        and weight.shape[0] <= 2 * weight.shape[2] * weight.shape[3]
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
