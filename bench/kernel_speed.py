"""robustlab's CPU kernels (`robustlab.attacks.cpu_kernels`) against PyTorch's, shape by shape.

    .venv/bin/python bench/kernel_speed.py [--repeats 11]

For each shape: time of PyTorch's forward + input-gradient backward, and robustlab's
replacement as a ratio to it (< 1 = faster), measured in interleaved rounds; `used` says
whether `CPUKernels` picks the replacement for that call. The rules in cpu_kernels.py (for the
1-channel convolution at most 2 x kernel-taps output channels and CONV_MIN_NUMEL input
elements; for the max-pool at least POOL_MIN_NUMEL elements) come from this table.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from attack_speed import timed  # same interleaved-median timing as the attack bench

from robustlab.attacks import cpu_kernels
from robustlab.attacks.cpu_kernels import CPUKernels

# (batch, output channels, kernel, padding, image side) of 1-input-channel convolutions
CONV_SHAPES = [(256, 6, 5, 2, 28), (256, 32, 5, 2, 28), (256, 16, 3, 1, 28),
               (256, 64, 3, 1, 28), (128, 64, 3, 1, 32), (64, 64, 7, 3, 28),
               (64, 6, 5, 2, 28), (32, 6, 5, 2, 28), (16, 16, 3, 1, 28), (8, 8, 3, 1, 28)]
# (batch, channels, side) of 2x2 max-pool inputs (LeNet-5 / SmallCNN layers, shrunk batches)
POOL_SHAPES = [(256, 6, 28), (256, 32, 28), (256, 64, 14), (256, 16, 10), (128, 16, 10),
               (64, 6, 28), (256, 3, 8), (16, 6, 28), (8, 64, 14)]


def grad_through(fn, x: torch.Tensor, upstream: torch.Tensor, fast: bool) -> torch.Tensor:
    xr = x.detach().requires_grad_(True)
    with CPUKernels.when(fast):
        out = fn(xr)
    return torch.autograd.grad(out, xr, upstream)[0]


FAST_NODES = {"_OneChannelConvInputGradBackward", "_MaxPool2x2Backward"}


def row(label: str, fn, x: torch.Tensor, repeats: int) -> None:
    """One shape: `used` by the real rules; the time is the replacement's with the rules
    lifted, so the table also shows why small / wide shapes keep PyTorch's kernel."""
    with torch.no_grad():
        upstream = torch.randn_like(fn(x))
    with CPUKernels():
        used = type(fn(x.detach().requires_grad_(True)).grad_fn).__name__ in FAST_NODES
    names = ("POOL_MIN_NUMEL", "CONV_MAX_CHANNELS_PER_TAP", "CONV_MIN_NUMEL")
    rules = [getattr(cpu_kernels, k) for k in names]
    for k, lifted in zip(names, (0, 1 << 30, 0), strict=True):
        setattr(cpu_kernels, k, lifted)
    try:
        ref = grad_through(fn, x, upstream, fast=False)
        err = (grad_through(fn, x, upstream, fast=True) - ref).abs().max() / ref.abs().max()
        t = timed({"torch": lambda: grad_through(fn, x, upstream, fast=False),
                   "robustlab": lambda: grad_through(fn, x, upstream, fast=True)}, repeats)
    finally:
        for k, value in zip(names, rules, strict=True):
            setattr(cpu_kernels, k, value)
    print(f"  {label:32s} {x.numel():>10,d} elements  used {str(used):5s}  replacement / "
          f"torch {t['robustlab'] / t['torch']:.2f}  grad diff {err:.1e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=11)
    args = p.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    torch.manual_seed(0)
    print("1-input-channel convolution (weights frozen), forward + input gradient:")
    for n, c, k, pad, side in CONV_SHAPES:
        w, b = torch.randn(c, 1, k, k), torch.randn(c)
        row(f"N {n}, {c} ch, {k}x{k}, pad {pad}, {side}x{side}",
            lambda t, w=w, b=b, pad=pad: F.conv2d(t, w, b, padding=pad),
            torch.rand(n, 1, side, side), args.repeats)
    print(f"2x2 max-pool (POOL_MIN_NUMEL {cpu_kernels.POOL_MIN_NUMEL:,d}), after a ReLU:")
    for n, c, side in POOL_SHAPES:
        row(f"N {n}, {c} ch, {side}x{side}", lambda t: F.max_pool2d(t, 2),
            torch.relu(torch.randn(n, c, side, side)), args.repeats)


if __name__ == "__main__":
    main()
