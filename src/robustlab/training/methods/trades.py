"""TRADES (Zhang et al. 2019): `trades`.

`L = CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv))` (batch mean), with `x_adv`
crafted to maximise the KL term: start `x + 0.001 * N(0, 1)`, `steps` (10) projected ascent steps
of `step_size` (default 2.5 eps / steps, i.e. the paper's 0.01 for eps 0.031 scaled with eps).
The clean forward pass is made once, before the attack, and its graph is reused for the loss
(its detached probabilities are the attack's target), so a step costs `steps` input-gradient passes
plus 2 forwards and 1 backward. The budget follows `eps_warmup` (`AdversarialMethod`). The
loss itself is `losses.trades_loss`, usable in any training loop. With `awp` (awp.py) the
attack's target comes from a clean forward of its own (no gradient), then the objective is
taken at the perturbed weights.
Per-epoch log: `eps`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from robustlab.registry import METHODS
from robustlab.training.methods.awp import preserved_buffers
from robustlab.training.methods.base import AdversarialMethod, BatchOutput, label_smoothing
from robustlab.training.methods.losses import trades_examples, trades_loss, trades_objective
from robustlab.training.methods.options import Option


@METHODS.register("trades")
class Trades(AdversarialMethod):
    supports_awp = True
    OPTIONS: ClassVar[dict[str, Option]] = {
        "beta": Option(6.0, "float", "weight of the KL robustness term", low=0.0),
        "steps": Option(10, "int", "KL-PGD steps", low=1),
        "step_size": Option(None, "float", "KL-PGD step (null: 2.5 eps / steps)", low=0.0,
                            low_open=True, allow_none=True),
        "init_std": Option(0.001, "float", "std of the Gaussian start around x", low=0.0),
    }

    def loss(self, model, x, y, ctx) -> BatchOutput:
        loss, logits = trades_loss(model, x, y, eps=self.budget(ctx), norm=self.norm,
                                   beta=self.beta, steps=self.steps, step_size=self.step_size,
                                   init_std=self.init_std, return_logits=True,
                                   label_smoothing=label_smoothing(ctx))
        return BatchOutput(loss, logits)

    def adversarial_examples(self, model, x, y, ctx):
        # the attack's target: a clean forward of its own, leaving the batch-norm statistics
        # to the objective's forwards (as many as the plain step makes)
        with torch.no_grad(), preserved_buffers(model):
            p_clean = F.softmax(model(x), dim=1)
        return trades_examples(model, x, p_clean, eps=self.budget(ctx), norm=self.norm,
                               steps=self.steps, step_size=self.step_size,
                               init_std=self.init_std)

    def objective(self, model, x, y, x_adv, ctx) -> BatchOutput:
        logits = model(x)
        loss = trades_objective(logits, model(x_adv), y, beta=self.beta,
                                label_smoothing=label_smoothing(ctx))
        return BatchOutput(loss, logits.detach())
