"""Where the input-gradient pass spends its time on CPU, and what the alternatives measure.

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/floor_breakdown.py
        [--models lenet5 smallcnn] [--batch 256] [--repeats 15] [--compile]

PGD-10 is 10 of these passes (forward + backward to the input, weights frozen); robustlab
already runs below 10 of them (samples freeze once adversarial), so any further speed-up of an
attack has to come from the pass itself. For each model this prints the profiler's per-op
share of the eager NCHW pass, then each alternative's time as a ratio to the eager pass
measured in the same rounds (< 1 = faster) and its largest gradient difference:

- `channels_last`: input and conv weights in channels_last (what the issue expected to win);
- `2 workers x 1 thread`: the batch split in two halves run by two Python threads with one
  torch thread each (inter-op instead of intra-op parallelism);
- `robustlab CPUKernels`: the pass as robustlab's attacks run it on the CPU
  (`robustlab.accel.cpu_kernels`: a 1-input-channel convolution's input gradient as a
  matrix product over kernel taps or a depthwise convolution, 2x2 max-pooling as compiled
  loops that also take over the backward mask of a ReLU right before them);
- `max-pool in channels_last`: pooling inputs converted to channels_last (ATen's NCHW max-pool
  is slow in micro-benchmarks), back to NCHW before the next convolution;
- `torch.compile` (with `--compile`; compile time is excluded, printed separately).

It also prints the compute floor: the pass's multiply-adds (convolutions and linear layers,
forward + input gradient = 2x the forward's) at the machine's measured matmul throughput
(a 2048 x 2048 sgemm), as a fraction of the eager pass. What lies between that fraction and
1 is memory-bound work (ReLU, pooling, 1-channel convolutions) that kernels can still win.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from attack_speed import timed  # same interleaved-median timing as the attack bench
from torch import Tensor, nn

from robustlab.attacks import input_gradient
from robustlab.attacks.losses import ce_loss
from robustlab.data import load_dataset
from robustlab.models import create_model

CL = torch.channels_last


def input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """The bare eager pass: forward, summed cross-entropy, gradient to the input."""
    xr = x.detach().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)[0]


def forward_macs(model: nn.Module, x: Tensor) -> int:
    """Multiply-adds of the Conv2d / Linear layers in one forward pass of `x`."""
    total = 0

    def count(module: nn.Module, _inputs, out: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.weight[0].numel()  # in_channels / groups * kh * kw
            total += out.numel() * k
        elif isinstance(module, nn.Linear):
            total += out.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total


def matmul_gflops(repeats: int = 9) -> float:
    """The machine's sgemm throughput: best of `repeats` 2048 x 2048 products (a peak, so
    the fastest run rather than the median)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048**3 / best / 1e9


class ChannelsLastPool(nn.Module):
    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x.contiguous(memory_format=CL)).contiguous()


def replaced(model: nn.Module, match: type, wrap: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """A copy of `model` with its `match` submodules wrapped."""
    out = copy.deepcopy(model)
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, match):
                setattr(parent, name, wrap(child))
    return out


def profile_shares(model: nn.Module, x: Tensor, y: Tensor, top: int = 8) -> str:
    from torch.profiler import profile

    input_grad(model, x, y)
    with profile() as prof:
        for _ in range(5):
            input_grad(model, x, y)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return ", ".join(f"{e.key.removeprefix('aten::')} {e.self_cpu_time_total / total:.0%}"
                     for e in events[:top])


def bench_model(name: str, splits, args) -> None:
    torch.manual_seed(0)
    model = create_model(name, **splits.info.model_kwargs()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = splits.test.x[: args.batch], splits.test.y[: args.batch]
    threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(2)

    def half(xs: Tensor, ys: Tensor) -> Tensor:
        torch.set_num_threads(1)  # per worker thread: OpenMP's thread count is thread-local
        return input_grad(model, xs, ys)

    def two_workers() -> Tensor:
        h = len(x) // 2
        parts = [pool.submit(half, x[:h], y[:h]), pool.submit(half, x[h:], y[h:])]
        return torch.cat([f.result() for f in parts])

    cl_model = copy.deepcopy(model).to(memory_format=CL)
    variants: dict[str, Callable[[], Tensor]] = {
        "channels_last": lambda: input_grad(cl_model, x.contiguous(memory_format=CL), y),
        "2 workers x 1 thread": two_workers,
    }
    # the attacks' own gradient routine, as AttackModel calls it on the CPU
    variants["robustlab CPUKernels"] = (
        lambda: input_gradient(model, x, y, ce_loss, cpu_kernels=True).grad)
    if any(isinstance(m, nn.MaxPool2d) for m in model.modules()):
        pm = replaced(model, nn.MaxPool2d, ChannelsLastPool)
        variants["max-pool in channels_last"] = lambda: input_grad(pm, x, y)
    if args.compile:
        compiled = torch.compile(model)
        t0 = time.perf_counter()
        input_grad(compiled, x, y)
        print(f"torch.compile: first call {time.perf_counter() - t0:.1f} s")
        variants["torch.compile"] = lambda: input_grad(compiled, x, y)

    ref = input_grad(model, x, y)
    scale = ref.abs().max().item()
    errors = {k: (fn() - ref).abs().max().item() / scale for k, fn in variants.items()}
    torch.set_num_threads(threads)
    t = timed({"eager": lambda: input_grad(model, x, y), **variants}, args.repeats)
    pool.shutdown()
    print(f"\n== {name}: batch {len(x)}, {threads} threads, eager NCHW pass "
          f"{t['eager'] * 1e3:.1f} ms (median of {args.repeats})")
    print(f"op shares: {profile_shares(model, x, y)}")
    for k in variants:
        print(f"  {k:30s} time / eager {t[k] / t['eager']:.2f}   "
              f"max |grad diff| / max |grad| {errors[k]:.1e}")
    flops = 2 * 2 * forward_macs(model, x)  # forward + input gradient, 2 FLOPs per MAC
    peak = matmul_gflops()
    print(f"compute floor: {flops / 1e9:.2f} GFLOP per pass at {peak:.0f} GFLOP/s (2048^2 "
          f"sgemm) = {flops / peak / 1e9 * 1e3:.1f} ms = {flops / peak / 1e9 / t['eager']:.2f}"
          f" of the eager pass")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["lenet5", "smallcnn"])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (slow)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    splits = load_dataset("mnist")
    for name in args.models:
        bench_model(name, splits, args)


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
