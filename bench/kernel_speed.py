"""robustlab's CPU kernels (`robustlab.accel.cpu_kernels`) against PyTorch's, shape by shape.

    .venv/bin/python bench/kernel_speed.py [--repeats 11]

For each shape: time of PyTorch's forward + input-gradient backward, and robustlab's
replacement as a ratio to it (< 1 = faster), measured in interleaved rounds; `used` says
which replacement `CPUKernels` picks for that call (or `torch`). The 1-channel convolution has
two: its input gradient as a matrix product over kernel taps + shifted adds (`taps`), or as a
depthwise convolution + channel sum (`depthwise`); both are timed. The rules in
cpu_kernels.py (the convolution: CONV_MIN_NUMEL input elements, taps form from
CONV_GEMM_MIN_CHANNELS_PER_TAP channels per tap on; the max-pool: at least POOL_MIN_NUMEL
elements) come from this table.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from attack_speed import timed  # same interleaved-median timing as the attack bench

from robustlab.accel import cpu_kernels
from robustlab.accel.cpu_kernels import CPUKernels

# (batch, output channels, kernel, padding, image side) of 1-input-channel convolutions
CONV_SHAPES = [(256, 6, 5, 2, 28), (256, 12, 5, 2, 28), (256, 32, 5, 2, 28),
               (256, 16, 3, 1, 28), (256, 8, 3, 1, 28), (256, 64, 3, 1, 28),
               (128, 64, 3, 1, 32), (64, 64, 7, 3, 28), (256, 32, 7, 3, 28),
               (64, 32, 5, 2, 28), (32, 32, 5, 2, 28), (64, 6, 5, 2, 28), (32, 6, 5, 2, 28),
               (16, 16, 3, 1, 28), (8, 8, 3, 1, 28)]
# (batch, channels, side) of 2x2 max-pool inputs (LeNet-5 / SmallCNN layers, shrunk batches)
POOL_SHAPES = [(256, 6, 28), (256, 32, 28), (256, 64, 14), (256, 16, 10), (128, 16, 10),
               (64, 6, 28), (256, 3, 8), (16, 6, 28), (8, 64, 14), (16, 16, 10), (4, 6, 28)]


def grad_through(fn, x: torch.Tensor, upstream: torch.Tensor, fast: bool) -> torch.Tensor:
    xr = x.detach().requires_grad_(True)
    with CPUKernels.when(fast):
        out = fn(xr)
    return torch.autograd.grad(out, xr, upstream)[0]


LIFTED = {"POOL_MIN_NUMEL": 0, "CONV_MIN_NUMEL": 0}  # size rules off while timing
CONV_FORMS = {"taps": 0.0, "depthwise": float("inf")}  # CONV_GEMM_MIN_CHANNELS_PER_TAP


def _used(fn, x: torch.Tensor) -> str:
    with CPUKernels():
        node = type(fn(x.detach().requires_grad_(True)).grad_fn).__name__
    if node == "_MaxPool2x2Backward":
        return "compiled"
    if node == "_OneChannelConvInputGradBackward":
        c, taps = fn.weight.shape[0], fn.weight.shape[2] * fn.weight.shape[3]
        return "taps" if c >= cpu_kernels.CONV_GEMM_MIN_CHANNELS_PER_TAP * taps else "depthwise"
    return "torch"


def row(label: str, fn, x: torch.Tensor, repeats: int, forms: dict[str, dict]) -> None:
    """One shape: `used` by the real rules; each form's time is taken with the size rules
    lifted (and the form forced), so the table also shows why small shapes keep PyTorch's."""
    with torch.no_grad():
        upstream = torch.randn_like(fn(x))
    used = _used(fn, x)
    ref = grad_through(fn, x, upstream, fast=False)
    contenders, errors = {"torch": lambda: grad_through(fn, x, upstream, fast=False)}, {}
    saved = {k: getattr(cpu_kernels, k) for k in
             [*LIFTED, "CONV_GEMM_MIN_CHANNELS_PER_TAP"]}

    def forced(overrides: dict):
        def run():
            for k, v in {**LIFTED, **overrides}.items():
                setattr(cpu_kernels, k, v)
            try:
                return grad_through(fn, x, upstream, fast=True)
            finally:
                for k, v in saved.items():
                    setattr(cpu_kernels, k, v)
        return run

    for name, overrides in forms.items():
        contenders[name] = forced(overrides)
        errors[name] = float((contenders[name]() - ref).abs().max() / ref.abs().max())
    t = timed(contenders, repeats)
    ratios = "  ".join(f"{k} / torch {t[k] / t['torch']:.2f} (grad diff {errors[k]:.1e})"
                       for k in forms)
    print(f"  {label:32s} {x.numel():>10,d} elements  used {used:9s}  {ratios}")


class _Conv:
    """F.conv2d with fixed frozen weights (the bench needs to see the weight shape)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: int) -> None:
        self.weight, self.bias, self.padding = weight, bias, padding

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, self.weight, self.bias, padding=self.padding)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=11)
    args = p.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    torch.manual_seed(0)
    print("1-input-channel convolution (weights frozen), forward + input gradient:")
    conv_forms = {k: {"CONV_GEMM_MIN_CHANNELS_PER_TAP": v} for k, v in CONV_FORMS.items()}
    for n, c, k, pad, side in CONV_SHAPES:
        conv = _Conv(torch.randn(c, 1, k, k), torch.randn(c), pad)
        row(f"N {n}, {c} ch, {k}x{k}, pad {pad}, {side}x{side}", conv,
            torch.rand(n, 1, side, side), args.repeats, conv_forms)
    print(f"2x2 max-pool (POOL_MIN_NUMEL {cpu_kernels.POOL_MIN_NUMEL:,d}), after a ReLU:")
    for n, c, side in POOL_SHAPES:
        row(f"N {n}, {c} ch, {side}x{side}", lambda t: F.max_pool2d(t, 2),
            torch.relu(torch.randn(n, c, side, side)), args.repeats, {"compiled": {}})

if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
