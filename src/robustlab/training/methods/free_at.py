"""Free adversarial training (Shafahi et al. 2019): `free-at`.

Each minibatch is replayed `m` times (default 4). Every replay does ONE forward/backward at
`x + delta` that yields both the parameter gradient (an optimizer step) and the input gradient
(an ascent step on `delta`, projected onto the eps-ball). `delta` is carried across replays AND
across minibatches (it starts at zero). An epoch therefore costs ~m standard epochs and makes m
optimizer steps per batch: to match a standard run's budget, train for `epochs / m` epochs
(Shafahi et al.). The budget follows `eps_warmup` (`AdversarialMethod`; the carried
`delta` is projected onto the current ball). Per-epoch log: `eps`. The logits reported are
those of the first replay (at `x + delta` carried from the previous batch). With
`label_smoothing` the one backward is that of the smoothed loss, so `delta`'s ascent follows
it too: the method's single backward serves both, by design.

Note: the input gradient is taken at the clipped point `clamp(x + delta, 0, 1)`; where the clip
is active it is the gradient w.r.t. that point, a standard simplification.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from robustlab.attacks.norms import steepest_direction
from robustlab.registry import METHODS
from robustlab.training.methods.base import AdversarialMethod, BatchOutput, label_smoothing
from robustlab.training.methods.options import Option
from robustlab.training.methods.perturb import ball_project, differentiable_forward


@METHODS.register("free-at")
class FreeAT(AdversarialMethod):
    OPTIONS: ClassVar[dict[str, Option]] = {
        "m": Option(4, "int", "minibatch replays", low=1),
        "step_size": Option(None, "float", "perturbation step (null: eps)", low=0.0,
                            low_open=True, allow_none=True),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.delta: torch.Tensor | None = None

    def train_step(self, model, optimizer, x, y, ctx) -> BatchOutput:
        eps = self.budget(ctx)
        step = self.step_size if self.step_size is not None else eps
        n = x.shape[0]
        if self.delta is None or self.delta.shape[1:] != x.shape[1:] or len(self.delta) < n:
            fresh = torch.zeros_like(x)
            if self.delta is not None and self.delta.shape[1:] == x.shape[1:]:
                fresh[: len(self.delta)] = self.delta.to(x.device)
            self.delta = fresh
        delta = self.delta[:n]
        first_logits, smoothing = None, label_smoothing(ctx)
        for _ in range(self.m):
            xa = (x + delta).clamp(0.0, 1.0).requires_grad_(True)
            logits = differentiable_forward(model)(xa)
            loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            delta = ball_project(delta + step * steepest_direction(xa.grad, self.norm),
                                 eps, self.norm)
            if first_logits is None:
                first_logits = logits.detach()
        self.delta[:n] = delta
        return BatchOutput(loss.detach(), first_logits)

    def state_dict(self) -> dict[str, Any]:
        return {"delta": self.delta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.delta = state["delta"]
