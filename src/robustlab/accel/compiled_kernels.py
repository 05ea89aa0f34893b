"""Compiled CPU loops (numba) for 2x2 / stride-2 max-pooling, used by `cpu_kernels`.

PyTorch's NCHW max-pool (and any composition of tensor ops that finds each window's argmax)
makes several passes over memory; one loop that reads each window once, writes its maximum and
a one-byte code of where it was, and a backward loop that writes each window's four gradient
cells once, do the same work in a fifth of the time (`bench/kernel_speed.py`). numba compiles
them on first use (about a second; cached on disk after that).

Semantics are ATen's exactly: the code is the FIRST maximum of the window in row-major order
(a later cell wins only if strictly greater), so values and gradients are bit-identical to
`F.max_pool2d`, ties included; inputs holding a NaN are left to ATen. An odd last row / column
is outside every window (gradient 0).
"""

from __future__ import annotations

import numba
import torch
from torch import Tensor

# Every loop below runs over independent image planes; two OpenMP runtimes (PyTorch's and
# numba's) would share the cores, so numba's loops stay single-threaded and release the GIL.
_JIT = {"nopython": True, "nogil": True, "cache": True}
_SAME_SIZE_INT = {torch.float32: torch.int32, torch.float64: torch.int64}


@numba.jit(**_JIT)
def _pool_forward(x, out, code, relu_input):  # pragma: no cover - compiled
    """Maxima and codes of the 2x2 windows; returns whether any input was NaN (then the
    caller uses ATen: its NaN rule needs a branch per cell, which would slow every call).
    `relu_input`: a window whose maximum is <= 0 gets code + 4 (no cell takes a gradient)."""
    planes, h, w = out.shape
    nan = False
    for p in range(planes):
        for i in range(h):
            for j in range(w):
                a, b = x[p, 2 * i, 2 * j], x[p, 2 * i, 2 * j + 1]
                c, d = x[p, 2 * i + 1, 2 * j], x[p, 2 * i + 1, 2 * j + 1]
                nan |= (a != a) | (b != b) | (c != c) | (d != d)
                right_top = b > a  # strict: on a tie the earlier cell stays
                top = b if right_top else a
                right_bottom = d > c
                bottom = d if right_bottom else c
                lower = bottom > top
                m = bottom if lower else top
                out[p, i, j] = m
                code[p, i, j] = ((2 + right_bottom) if lower else right_top) \
                    + 4 * (relu_input & (m <= 0))
    return nan


@numba.jit(**_JIT)
def _pool_backward(grad_out, code, grad_in):  # pragma: no cover - compiled
    """Integer views of the float gradients: `bits & -(k == cell)` keeps or zeroes a value
    without a branch (a select on the code compiled to branches, which mispredict on real data)."""
    planes, h, w = grad_out.shape
    height, width = grad_in.shape[1], grad_in.shape[2]
    for p in range(planes):
        for i in range(h):
            for j in range(w):
                g, k = grad_out[p, i, j], code[p, i, j]
                grad_in[p, 2 * i, 2 * j] = g & -(k == 0)
                grad_in[p, 2 * i, 2 * j + 1] = g & -(k == 1)
                grad_in[p, 2 * i + 1, 2 * j] = g & -(k == 2)
                grad_in[p, 2 * i + 1, 2 * j + 1] = g & -(k == 3)
        if height % 2:
            grad_in[p, height - 1, :] = 0
        if width % 2:
            grad_in[p, :, width - 1] = 0


def _planes(t: Tensor) -> Tensor:
    return t.reshape(-1, t.shape[-2], t.shape[-1])


def max_pool_2x2(x: Tensor, *, relu_input: bool = False) -> tuple[Tensor, Tensor] | None:
    """`x` contiguous `[..., H, W]` float32/64 on the CPU -> (maxima `[..., H//2, W//2]`,
    uint8 code 0-3 of each window's first maximum, row-major), or None if `x` holds a NaN.

    `relu_input=True` (`x` is a ReLU's output, so >= 0): windows whose maximum is 0 get codes
    4-7, which `max_pool_2x2_backward` gives no gradient -- the ReLU's backward mask applied
    here already (at the pooled cell x = maximum, so the ReLU passes the gradient iff > 0)."""
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    out = x.new_empty(*x.shape[:-2], h, w)
    code = torch.empty(out.shape, dtype=torch.uint8)
    if _pool_forward(_planes(x).numpy(), _planes(out).numpy(), _planes(code).numpy(),
                     relu_input):
        return None
    return out, code


def max_pool_2x2_backward(grad_out: Tensor, code: Tensor, input_shape: torch.Size) -> Tensor:
    """Gradient `input_shape` of `max_pool_2x2`: `grad_out` at each window's coded cell
    (codes >= 4: nowhere)."""
    grad_in = grad_out.new_empty(input_shape)
    bits = _SAME_SIZE_INT[grad_out.dtype]
    _pool_backward(_planes(grad_out.contiguous().view(bits)).numpy(), _planes(code).numpy(),
                   _planes(grad_in.view(bits)).numpy())
    return grad_in
