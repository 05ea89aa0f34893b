"""One memory layout for every image tensor robustlab holds: NCHW with standard strides.

With one channel (MNIST, Fashion-MNIST), NCHW and channels_last strides both count as
contiguous (`is_contiguous()` is True for either), so `.contiguous()` keeps whichever a source
produced. The CPU convolution picks its algorithm, hence its output layout and rounding, by
the strides: channels_last-looking inputs give channels_last activations, on which the 2x2
max-pool and ReLU kernels of `robustlab.accel.cpu_kernels` cannot run, and a batch
perturbed by an attack (its gradient is NCHW) then trains at a slower NCHW speed than its
clean batch. Standard NCHW strides everywhere give one numeric result per seed whatever the
data's source, and the fast kernels in every pass (bench/method_speed.py).
"""

from __future__ import annotations

import torch


def standard_strides(shape: torch.Size) -> tuple[int, ...]:
    """The strides of a contiguous NCHW tensor of `shape` (size-1 dimensions included)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def as_nchw(x: torch.Tensor) -> torch.Tensor:
    """`x` itself if it already has standard strides, else a copy that has them."""
    if x.stride() == standard_strides(x.shape):
        return x
    return torch.empty(x.shape, dtype=x.dtype, device=x.device).copy_(x)
