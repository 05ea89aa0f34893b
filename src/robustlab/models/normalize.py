"""Per-channel input normalisation as a module, so every model takes pixel-space inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """`(x - mean) / std` per channel, with `mean` and `std` stored as buffers.

    Input: float `[N, C, H, W]` in pixel space ([0, 1]); output: same shape, normalised.
    The buffers have shape `[1, C, 1, 1]`, follow `.to(device/dtype)` and are saved in the
    state dict, so a checkpoint carries the normalisation it was trained with.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = _as_vector(mean, "mean")
        std_t = _as_vector(std, "std")
        if mean_t.numel() != std_t.numel():
            raise ValueError(
                f"mean has {mean_t.numel()} values but std has {std_t.numel()}; "
                "expected one value per input channel in each"
            )
        if not bool((std_t > 0).all()):
            raise ValueError(f"std must be > 0 in every channel, got {std_t.tolist()}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1))
        self.register_buffer("std", std_t.view(1, -1, 1, 1))

    @property
    def channels(self) -> int:
        return int(self.mean.shape[1])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"Normalize expected input [N, {self.channels}, H, W], got {tuple(x.shape)}"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = [round(v, 4) for v in self.mean.flatten().tolist()]
        std = [round(v, 4) for v in self.std.flatten().tolist()]
        return f"mean={mean}, std={std}"


def _as_vector(values: Sequence[float], field: str) -> Tensor:
    try:
        out = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ValueError(
            f"{field} must be a sequence of numbers (one per channel), got {values!r}"
        ) from None
    if out.numel() == 0:
        raise ValueError(f"{field} must have one value per input channel, got an empty sequence")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{field} must be finite, got {out.tolist()}")
    return out
