"""Gaussian data augmentation, the training of Cohen, Rosenfeld & Kolter (2019) for randomized
smoothing: cross-entropy on x + d, d ~ N(0, sigma^2 I), one fresh draw per image and step.

The noise is added in [0, 1] pixel space, before the model's own normalisation, and is not
clipped -- exactly the noise `robustlab certify --sigma` smooths with, so certify with the
training sigma. The running training accuracy is measured on the noisy copies. Randomness comes
from torch's global RNG, which the loop reseeds every epoch (a resumed run draws the same noise).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from robustlab.registry import METHODS
from robustlab.training.methods.base import BatchOutput, TrainingMethod, label_smoothing
from robustlab.training.methods.options import Option


@METHODS.register("gaussian-aug")
class GaussianAugmentation(TrainingMethod):
    """Cross-entropy on Gaussian-noised inputs `x + sigma * N(0, I)` (`x` `[B, C, H, W]`)."""

    cpu_kernels = True

    OPTIONS: ClassVar[dict[str, Option]] = {
        "sigma": Option(0.25, "float", "std of the Gaussian noise added to every training "
                        "image, pixel units (certify with the same sigma)", low=0.0,
                        low_open=True),
    }

    def loss(self, model, x, y, ctx) -> BatchOutput:
        logits = model(x + self.sigma * torch.randn_like(x))
        return BatchOutput(F.cross_entropy(logits, y, label_smoothing=label_smoothing(ctx)),
                           logits.detach())
