"""Multi-process training on PyTorch's own engine (torch.distributed + DistributedDataParallel).

Launched by `torchrun --nproc-per-node N -m robustlab train ...` (or `robustlab train --nproc N`,
which runs torchrun for you). Every rank draws the same shuffled global batch (same seed) and
trains on its contiguous shard of it, so the global batch size is the config's; DDP averages the
gradients. Rank 0 alone writes the run folder. Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's contiguous part of each tensor (split along dim 0 as evenly as possible)."""
        if not self.enabled:
            return tensors
        return tuple(t.tensor_split(self.world_size)[self.rank] for t in tensors)

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of `value` over ranks (in place; returned for convenience)."""
        if self.enabled:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun set up (no-op for a single process)."""
    if not launched_by_torchrun():
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    ctx = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                      local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    return ctx


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """One GPU per rank (LOCAL_RANK); CPU ranks share the CPU."""
    if device.type == "cuda" and ctx.enabled:
        return torch.device("cuda", ctx.local_rank)
    return device


def wrap_model(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP-wrap `model` when running in several processes. Attacks that craft training
    examples must use the unwrapped module (`unwrap`), so their input-gradient passes never
    enter DDP's gradient reduction."""
    if not ctx.enabled:
        return model
    device_ids = [ctx.local_rank] if next(model.parameters()).is_cuda else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
