"""Bit-depth reduction ("feature squeezing", Xu et al. 2018): quantise each pixel to `bits` bits."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from robustlab.common.options import Option
from robustlab.defenses.base import PreprocessingDefense, check_image_batch
from robustlab.registry import DEFENSES


@DEFENSES.register("bit-depth")
class BitDepth(PreprocessingDefense):
    """`classifier(round(x * (2**bits - 1)) / (2**bits - 1))`.

    Rounding has zero gradient almost everywhere, so the defense is `nondifferentiable`; BPDA
    uses the identity.
    """

    nondifferentiable = True
    OPTIONS: ClassVar[dict[str, Option]] = {
        "bits": Option(1, "int", "bits per pixel (1: binarise at 0.5)", low=1, high=16),
    }

    def transform(self, x: Tensor) -> Tensor:
        check_image_batch(self.name, x)
        levels = float(2**self.bits - 1)
        return torch.round(x.clamp(0.0, 1.0) * levels) / levels
