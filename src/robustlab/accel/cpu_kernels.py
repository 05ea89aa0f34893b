"""Faster CPU kernels for the layers every MNIST-style CNN has, used only inside attacks.

An attack's cost is its input-gradient passes (`AttackModel.gradient`). On the CPU some of
PyTorch's kernels in that pass are far off the machine's speed (measured by
`bench/floor_breakdown.py`, batch 256, 2 threads):

- the input gradient of a convolution with ONE input channel (the first layer on grey-scale
  images) is a transposed convolution with a single output channel -- on LeNet-5 it took
  more time than all other convolutions together. It is the same sum of products written
  either as one batched matrix product (kernel taps x channels times channels x pixels) whose
  per-tap rows are then added at their shifted positions (used from half as many channels as
  taps on: SmallCNN's 32 channels at 5x5), or, with fewer channels (LeNet-5's 6 at 5x5),
  as a depthwise convolution of the output gradient with the flipped kernels followed by a
  sum over channels -- 0.35-0.8x the time of oneDNN's kernel (`bench/kernel_speed.py`);
- `max_pool2d` 2x2 / stride 2 on NCHW inputs finds its maxima and int64 indices in a slow
  loop, and its backward zero-fills then scatters; `compiled_kernels` does both in one pass
  over memory each (a one-byte code per window instead of int64 indices), 0.28-0.68x the time,
  bit-identical (ties: each window's FIRST maximum in row-major order, as ATen). Smaller
  tensors than ~64K elements keep the native kernel;
- a ReLU right before such a pool: at the pooled cell the ReLU's input equals the window's
  maximum, so its backward mask is "maximum > 0" per window; the pool applies it while it
  writes its gradient, and the ReLU's backward (a full pass over the largest activation)
  passes that gradient on untouched -- only when it arrives exactly as the pool wrote it
  (`_ReLU`), so a second use of the ReLU's output keeps the usual mask.

`CPUKernels` is a `TorchFunctionMode` that swaps these in for `F.conv2d` / `F.max_pool2d` /
`F.relu` calls that match exactly (anything else runs unchanged), so user models need no
change and are never modified. Forward values are bit-identical (so an attack's success checks
agree with the plain model), gradients too except the convolution's, equal to ~1e-7 relative
(a different summation order); tests compare all against PyTorch over random shapes. The
mode is entered around CPU forward passes that need the INPUT's gradient: an attack's and the
training perturbations' (parameters frozen), and the FGSM hybrid's shared clean pass, whose
backward gives the parameters' gradient and the input's at once (the convolution rule then
takes the weight and bias gradients from ATen and only the input gradient from the faster
form; the pool's pre-masked gradient is exact for everything behind the ReLU, parameters
included). A pass that needs no input gradient keeps PyTorch's kernels (the rules check
`x.requires_grad`).
"""

from __future__ import annotations

import functools
import importlib.util
from contextlib import AbstractContextManager, nullcontext
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

from robustlab.common.checks import is_integer

_CONV_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
              "return_indices")
_POOL_DEFAULTS = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                  "return_indices": False}
# Below ~64K elements PyTorch's own pool is as fast (call overhead), e.g. once an attack's
# active set has shrunk (bench/kernel_speed.py).
POOL_MIN_NUMEL = 1 << 16
# The 1-channel convolution's input gradient is no faster on inputs under ~16K elements (e.g.
# 16 images of 28x28, 3x3 kernels); the matrix-product form wins over the depthwise one from
# half as many output channels as kernel taps on (bench/kernel_speed.py).
CONV_MIN_NUMEL = 1 << 14
CONV_GEMM_MIN_CHANNELS_PER_TAP = 0.5


@functools.cache
def numba_available() -> bool:
    """Whether numba is installed (an optional extra, `robustlab[fast-cpu]`): without it the
    2x2 max-pool keeps PyTorch's kernel and every other kernel here still applies."""
    return importlib.util.find_spec("numba") is not None


def _compiled() -> ModuleType:
    """`compiled_kernels`, imported on first use: numba adds ~0.4 s to an import that most
    processes (GPU runs, models without a 2x2 pool) never need."""
    from robustlab.accel import compiled_kernels

    return compiled_kernels


def _bind(names: tuple[str, ...], args: tuple, kwargs: dict, defaults: dict) -> dict:
    bound = dict(defaults)
    bound.update(zip(names, args, strict=False))  # trailing parameters may be defaulted
    bound.update(kwargs)
    return bound


def _pair(v: Any) -> tuple[int, int] | None:
    """(a, b) for an int or a 2-sequence of ints, else None (e.g. padding='same')."""
    if is_integer(v):
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(is_integer(i) for i in v):
        return (int(v[0]), int(v[1]))
    return None


class _OneChannelConvInputGrad(torch.autograd.Function):
    """conv2d (stride 1, 1 input channel) whose input gradient is `_taps_gradient` or
    depthwise; a weight / bias that requires grad gets ATen's own gradient (the input gradient
    masked out of ATen's backward), so a training pass that also needs the input's gradient
    (the FGSM hybrid's shared backward) pays the fast input gradient only."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int]):
        ctx.params_grad = (weight.requires_grad, bias is not None and bias.requires_grad)
        ctx.save_for_backward(weight, x if any(ctx.params_grad) else None)
        ctx.padding = padding
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        weight, x = ctx.saved_tensors
        grad_w = grad_b = None
        if any(ctx.params_grad):
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_out, x, weight, [weight.shape[0]] if ctx.params_grad[1] else None,
                [1, 1], list(ctx.padding), [1, 1], False, [0, 0], 1,
                [False, ctx.params_grad[0], ctx.params_grad[1]])
        grad_x = _one_channel_input_grad(grad_out, weight, ctx.padding) \
            if ctx.needs_input_grad[0] else None
        return grad_x, grad_w, grad_b, None


def _one_channel_input_grad(grad_out: Tensor, weight: Tensor, padding: tuple[int, int]
                            ) -> Tensor:
    """Input gradient `[N, 1, H, W]` of a stride-1 1-channel conv: taps or depthwise."""
    c, _, kh, kw = weight.shape
    if c >= CONV_GEMM_MIN_CHANNELS_PER_TAP * kh * kw:
        return _taps_gradient(grad_out, weight, padding)
    ph, pw = padding
    flipped = weight.flip(2, 3)  # [C, 1, kh, kw]: one kernel per output channel
    per_channel = F.conv2d(grad_out, flipped, padding=(kh - 1 - ph, kw - 1 - pw), groups=c)
    return per_channel.sum(1, keepdim=True)


def _taps_gradient(grad_out: Tensor, weight: Tensor, padding: tuple[int, int]) -> Tensor:
    """Input gradient `[N, 1, H, W]` of a stride-1 1-channel conv from its output gradient
    `[N, C, Ho, Wo]`: per tap (i, j), sum_c weight[c, i, j] * grad_out[:, c] (one batched
    matrix product), added into the padded input at offset (i, j), padding cropped."""
    n, c, ho, wo = grad_out.shape
    _, _, kh, kw = weight.shape
    ph, pw = padding
    taps = torch.matmul(weight.reshape(c, kh * kw).t(), grad_out.reshape(n, c, ho * wo))
    taps = taps.view(n, kh, kw, ho, wo)
    padded = grad_out.new_zeros(n, ho + kh - 1, wo + kw - 1)
    for i in range(kh):
        for j in range(kw):
            padded[:, i : i + ho, j : j + wo] += taps[:, i, j]
    h, w = padded.shape[1] - 2 * ph, padded.shape[2] - 2 * pw
    return padded[:, ph : ph + h, pw : pw + w].unsqueeze(1).contiguous()


class _ReLU(torch.autograd.Function):
    """`F.relu` (in place or not) whose backward is ATen's, except when its gradient is the
    untouched output of a `_MaxPool2x2` over this ReLU's output, which applied the mask
    already (`premasked`); then the gradient passes as it is, saving a pass over memory."""

    @staticmethod
    def forward(ctx, x: Tensor, inplace: bool) -> Tensor:
        if inplace:
            ctx.mark_dirty(x)
            out = torch.relu_(x)
        else:
            out = torch.relu(x)
        ctx.save_for_backward(out)
        ctx.premasked = None  # (gradient tensor, its version) set by the pool's backward
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        premasked, ctx.premasked = ctx.premasked, None
        # identity + version: autograd summing another consumer's gradient into it (in place
        # or not) makes this false, and the mask is applied as usual
        if premasked is not None and grad is premasked[0] and grad._version == premasked[1]:
            return grad, None
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0), None


class _MaxPool2x2(torch.autograd.Function):
    """2x2 / stride-2 max-pool through `compiled_kernels` (ATen's values and gradients);
    inputs holding a NaN go through ATen's own kernels. `relu`: the `_ReLU` node that made
    `x`; the pool then applies that ReLU's mask in its backward (see `_ReLU`)."""

    @staticmethod
    def forward(ctx, x: Tensor, relu: Any) -> Tensor:
        pooled = _compiled().max_pool_2x2(x, relu_input=relu is not None)
        ctx.aten = pooled is None
        ctx.relu = None if ctx.aten else relu
        if ctx.aten:
            out, index = torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
            ctx.save_for_backward(x, index)
        else:
            out, code = pooled
            ctx.save_for_backward(code)
        ctx.input_shape = x.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        if ctx.aten:
            x, index = ctx.saved_tensors
            return torch.ops.aten.max_pool2d_with_indices_backward(
                grad_out, x, [2, 2], [2, 2], [0, 0], [1, 1], False, index), None
        (code,) = ctx.saved_tensors
        grad = _compiled().max_pool_2x2_backward(grad_out, code, ctx.input_shape)
        if ctx.relu is not None:
            ctx.relu.premasked = (grad, grad._version)
        return grad, None


class CPUKernels(TorchFunctionMode):
    """Swap in the faster kernels above for matching `F.conv2d` / `F.max_pool2d` / `F.relu`."""

    @staticmethod
    def may_apply(model: nn.Module) -> bool:
        """Whether `model` has a layer these kernels could take over (a 1-input-channel
        Conv2d or a 2x2 MaxPool2d). Models without one skip the mode and its per-op Python
        dispatch; a purely functional F.conv2d / F.max_pool2d then keeps PyTorch's kernel."""
        return any((isinstance(m, nn.Conv2d) and m.in_channels == 1)
                   or (isinstance(m, nn.MaxPool2d) and _pair(m.kernel_size) == (2, 2))
                   for m in model.modules())

    @staticmethod
    def active() -> bool:
        """Whether a `CPUKernels` mode is on (a second one would dispatch every op twice)."""
        return any(isinstance(m, CPUKernels) for m in _function_mode_stack())

    @staticmethod
    def when(on: bool) -> AbstractContextManager:
        """`CPUKernels()` if `on` and none is on yet, else a context that does nothing."""
        return CPUKernels() if on and not CPUKernels.active() else nullcontext()

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
        elif func is F.relu:
            fast = _relu(args, kwargs)
            if fast is not None:
                return fast
        return func(*args, **kwargs)


def _function_mode_stack() -> list:
    # private in torch 2.x (no public accessor for the TorchFunctionMode stack)
    from torch.overrides import _get_current_function_mode_stack

    return _get_current_function_mode_stack()


def _one_channel_conv(args: tuple, kwargs: dict) -> Tensor | None:
    a = _bind(_CONV_ARGS, args, kwargs, {"bias": None, "stride": 1, "padding": 0,
                                         "dilation": 1, "groups": 1})
    x, weight, bias = a["input"], a["weight"], a["bias"]
    padding = _pair(a["padding"])
    if not (
        isinstance(x, Tensor) and x.dim() == 4 and x.device.type == "cpu" and x.requires_grad
        and isinstance(weight, Tensor) and weight.dim() == 4 and weight.shape[1] == 1
        and a["groups"] == 1 and _pair(a["stride"]) == (1, 1)
        and _pair(a["dilation"]) == (1, 1) and padding is not None
        and 0 <= padding[0] < weight.shape[2] and 0 <= padding[1] < weight.shape[3]
        and x.numel() >= CONV_MIN_NUMEL
    ):
        return None
    return _OneChannelConvInputGrad.apply(x, weight, bias, padding)


def _max_pool_2x2(args: tuple, kwargs: dict) -> Tensor | None:
    a = _bind(_POOL_ARGS, args, kwargs, _POOL_DEFAULTS)
    x = a["input"]
    if not (
        isinstance(x, Tensor) and x.dim() == 4 and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64) and x.is_contiguous()
        and _pair(a["kernel_size"]) == (2, 2) and a["stride"] in (None, 2, (2, 2), [2, 2])
        and _pair(a["padding"]) == (0, 0) and _pair(a["dilation"]) == (1, 1)
        and not a["ceil_mode"] and not a["return_indices"]
        and x.shape[-2] >= 2 and x.shape[-1] >= 2 and x.numel() >= POOL_MIN_NUMEL
        and numba_available()
    ):
        return None
    if x.requires_grad and torch.is_grad_enabled():
        return _MaxPool2x2.apply(x, _relu_node_of(x))
    pooled = _compiled().max_pool_2x2(x)
    return pooled[0] if pooled is not None else None


def _relu(args: tuple, kwargs: dict) -> Tensor | None:
    """`_ReLU` for float CPU tensors in an autograd graph (not leaves, not views: an in-place
    ReLU on those is PyTorch's to handle or refuse); None (PyTorch's ReLU) otherwise."""
    a = _bind(("input", "inplace"), args, kwargs, {"inplace": False})
    x = a["input"]
    if not (
        isinstance(x, Tensor) and x.device.type == "cpu" and x.grad_fn is not None
        and x._base is None and x.dtype in (torch.float32, torch.float64)
        and torch.is_grad_enabled()
    ):
        return None
    out = _ReLU.apply(x, bool(a["inplace"]))
    out.grad_fn.out_version = out._version
    return out


def _relu_node_of(x: Tensor) -> Any:
    """The `_ReLU` node whose output `x` is, unchanged since (else None)."""
    node = x.grad_fn
    if isinstance(node, _ReLU._backward_cls) and x._version == node.out_version:
        return node
    return None
