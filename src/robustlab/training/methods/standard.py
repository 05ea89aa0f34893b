"""Standard (non-adversarial) training: cross-entropy on clean inputs."""

from __future__ import annotations

import torch.nn.functional as F

from robustlab.common.vocabulary import TRAIN_NORMS
from robustlab.registry import METHODS
from robustlab.training.methods.base import BatchOutput, TrainingMethod, label_smoothing


@METHODS.register("standard")
class Standard(TrainingMethod):
    cpu_kernels = True
    # it never attacks: the norm and eps are only the threat model `evaluate RUN` defaults to
    # (a standard baseline for an l1 study is `--norm l1 --eps 10`)
    norms = TRAIN_NORMS

    def loss(self, model, x, y, ctx):
        logits = model(x)
        return BatchOutput(F.cross_entropy(logits, y, label_smoothing=label_smoothing(ctx)),
                           logits.detach())
