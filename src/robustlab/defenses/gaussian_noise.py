"""Random noise injection: add Gaussian noise to the input at every forward pass."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from robustlab.common.options import Option
from robustlab.defenses.base import PreprocessingDefense, check_image_batch
from robustlab.registry import DEFENSES


@DEFENSES.register("gaussian-noise")
class GaussianNoise(PreprocessingDefense):
    """`classifier(clip(x + sigma * N(0, I), 0, 1))`, active in training AND evaluation mode.

    The noise comes from torch's global generator on `x`'s device, so `torch.manual_seed` makes
    it repeatable. Differentiable, `randomized`: adaptive attacks average gradients over passes
    (EOT).
    """

    randomized = True
    OPTIONS: ClassVar[dict[str, Option]] = {
        "sigma": Option(None, "float", "the noise's standard deviation in pixel units of [0, 1] "
                        "images (required)", low=0.0, low_open=True),
        "clip": Option(True, "bool", "clamp the noisy input back to [0, 1]"),
    }

    def transform(self, x: Tensor) -> Tensor:
        check_image_batch(self.name, x)
        noisy = x + self.sigma * torch.randn_like(x)
        return noisy.clamp(0.0, 1.0) if self.clip else noisy
