"""Bit-depth reduction ("feature squeezing", Xu et al. 2018): quantise each pixel to `bits` bits."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.defenses.base import PreprocessingDefense, check_image_batch, check_int
from robustlab.registry import DEFENSES


@DEFENSES.register("bit-depth")
class BitDepth(PreprocessingDefense):
    """`classifier(round(x * (2**bits - 1)) / (2**bits - 1))`.

    Options: `bits` (int in [1, 16]; 1 = binarise at 0.5). Rounding has zero gradient almost
    everywhere, so the defense is `nondifferentiable`; BPDA uses the identity.
    """

    nondifferentiable = True

    def __init__(self, *, model: nn.Module, bits: int = 1) -> None:
        self.bits = check_int("bits", bits, 1, 16)
        super().__init__(model)

    def transform(self, x: Tensor) -> Tensor:
        check_image_batch(self.name, x)
        levels = float(2**self.bits - 1)
        return torch.round(x.clamp(0.0, 1.0) * levels) / levels

    def describe_options(self) -> str:
        return f"bits={self.bits}"
