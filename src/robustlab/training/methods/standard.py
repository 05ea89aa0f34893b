"""Standard (non-adversarial) training: cross-entropy on clean inputs."""

from __future__ import annotations

import torch.nn.functional as F

from robustlab.registry import METHODS
from robustlab.training.methods.base import BatchOutput, TrainingMethod, label_smoothing


@METHODS.register("standard")
class Standard(TrainingMethod):
    cpu_kernels = True

    def loss(self, model, x, y, ctx):
        logits = model(x)
        return BatchOutput(F.cross_entropy(logits, y, label_smoothing=label_smoothing(ctx)),
                           logits.detach())
