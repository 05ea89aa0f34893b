"""Which evaluation batches this process computes, and gathering everyone's results.

`robustlab evaluate` under torchrun splits the work by *batch*: batch j of every attack run goes
to rank j % world_size, and every rank receives every batch's per-sample results back, in order.
Because each attack call is seeded per batch (the same seed for every batch), each batch's
adversarial examples are the ones a single process computes for it, so the per-sample results,
the worst case over attacks and every metric equal a one-process evaluation's (for models
without test-time randomness; a randomised defense draws from each process's global RNG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robustlab.common.checks import check_int


@dataclass(frozen=True)
class Shard:
    """This process's place among `world_size` evaluating processes (rank 0 of 1 = all)."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        check_int("Shard world_size", self.world_size, 1)
        check_int("Shard rank", self.rank, 0, self.world_size - 1)  # < world_size

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def owns(self, batch_index: int) -> bool:
        return batch_index % self.world_size == self.rank

    def gather(self, items: list[Any]) -> list[Any]:
        """Every rank's `items` (picklable; CPU tensors), concatenated in rank order, on every
        rank. Needs an initialised torch.distributed process group when enabled."""
        if not self.enabled:
            return items
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, items)
        return [item for part in parts for item in part]
