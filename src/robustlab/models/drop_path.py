"""Stochastic depth (Huang et al., 2016): drop a residual branch per sample while training."""

from __future__ import annotations

from torch import Tensor, nn

from robustlab.common.checks import check_number


class DropPath(nn.Module):
    """Zero the whole branch for each sample with probability `rate` (training only) and
    scale the kept ones by `1 / (1 - rate)`. Identity in eval mode or when `rate == 0`.

    Input/output: `[N, ...]`, same shape. Draws from the global torch RNG.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = check_number("drop path rate", rate, 0.0, 1.0, high_open=True)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
