"""Random noise injection: add Gaussian noise to the input at every forward pass."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.defenses.base import (
    PreprocessingDefense,
    check_flag,
    check_image_batch,
    check_positive_float,
)
from robustlab.registry import DEFENSES


@DEFENSES.register("gaussian-noise")
class GaussianNoise(PreprocessingDefense):
    """`classifier(clip(x + sigma * N(0, I), 0, 1))`, active in training AND evaluation mode.

    Options: `sigma` (> 0, the noise's standard deviation in pixel units of [0, 1] images),
    `clip` (bool, default True: clamp the noisy input back to [0, 1]). The noise comes from
    torch's global generator on `x`'s device, so `torch.manual_seed` makes it repeatable.
    Differentiable, `randomized`: adaptive attacks average gradients over passes (EOT).
    """

    randomized = True

    def __init__(self, *, model: nn.Module, sigma: float, clip: bool = True) -> None:
        self.sigma = check_positive_float("sigma", sigma)
        self.clip = check_flag("clip", clip)
        super().__init__(model)

    def transform(self, x: Tensor) -> Tensor:
        check_image_batch(self.name, x)
        noisy = x + self.sigma * torch.randn_like(x)
        return noisy.clamp(0.0, 1.0) if self.clip else noisy

    def describe_options(self) -> str:
        return f"sigma={self.sigma:g}, clip={self.clip}"
