"""MART (Wang et al. 2020, "misclassification aware adversarial training"): `mart`.

Adversarial examples: PGD (`steps`, 10) on cross-entropy with random start, step 2.5 eps / steps.
Loss: `BCE(f(x_adv), y) + beta * mean_i KL(p(x_i) || p(x_adv_i)) * (1 - p_y(x_i))`, where the
boosted CE `BCE = CE(f(x_adv), y) - log(1 - max_{j != y} p_j(x_adv))` also pushes down the
strongest wrong class. `beta` defaults to 6. The budget follows `eps_warmup`
(`AdversarialMethod`). Per-epoch log: `eps`. The loss itself is `losses.mart_loss`.
"""

from __future__ import annotations

from typing import ClassVar

from robustlab.registry import METHODS
from robustlab.training.methods.base import AdversarialMethod, BatchOutput, label_smoothing
from robustlab.training.methods.losses import mart_examples, mart_loss, mart_objective
from robustlab.training.methods.options import Option


@METHODS.register("mart")
class Mart(AdversarialMethod):
    supports_awp = True
    OPTIONS: ClassVar[dict[str, Option]] = {
        "beta": Option(6.0, "float", "weight of the misclassification-aware KL term", low=0.0),
        "steps": Option(10, "int", "PGD steps", low=1),
        "step_size": Option(None, "float", "PGD step (null: 2.5 eps / steps)", low=0.0,
                            low_open=True, allow_none=True),
    }

    def loss(self, model, x, y, ctx) -> BatchOutput:
        loss, logits = mart_loss(model, x, y, eps=self.budget(ctx), norm=self.norm,
                                 beta=self.beta, steps=self.steps, step_size=self.step_size,
                                 return_logits=True, label_smoothing=label_smoothing(ctx))
        return BatchOutput(loss, logits)

    def adversarial_examples(self, model, x, y, ctx):
        return mart_examples(model, x, y, eps=self.budget(ctx), norm=self.norm,
                             steps=self.steps, step_size=self.step_size)

    def objective(self, model, x, y, x_adv, ctx) -> BatchOutput:
        logits = model(x)
        loss = mart_objective(logits, model(x_adv), y, beta=self.beta,
                              label_smoothing=label_smoothing(ctx))
        return BatchOutput(loss, logits.detach())
