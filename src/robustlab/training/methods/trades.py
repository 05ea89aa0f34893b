"""TRADES (Zhang et al. 2019): `trades`.

`L = CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv))` (batch mean), with `x_adv`
crafted to maximise the KL term: start `x + 0.001 * N(0, 1)`, `k` (10) projected ascent steps
of `step_size` (default 2.5 eps / k, i.e. the paper's 0.01 for eps 0.031 scaled with eps).
The clean forward pass is made once, before the attack, and its graph is reused for the loss
(its detached probabilities are the attack's target), so a step costs k input-gradient passes
plus 2 forwards and 1 backward. The budget follows `eps_warmup` (`AdversarialMethod`).
Per-epoch log: `eps`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from robustlab.registry import METHODS
from robustlab.training.methods.base import AdversarialMethod, BatchOutput
from robustlab.training.methods.options import Option
from robustlab.training.methods.perturb import (
    differentiable_forward,
    input_gradient_mode,
    step_from,
    unwrap,
)


@METHODS.register("trades")
class Trades(AdversarialMethod):
    OPTIONS: ClassVar[dict[str, Option]] = {
        "beta": Option(6.0, "float", "weight of the KL robustness term", low=0.0),
        "k": Option(10, "int", "KL-PGD steps", low=1),
        "step_size": Option(None, "float", "KL-PGD step (null: 2.5 eps / k)", low=0.0,
                            low_open=True, allow_none=True),
        "init_std": Option(0.001, "float", "std of the Gaussian start around x", low=0.0),
    }

    def loss(self, model, x, y, ctx) -> BatchOutput:
        eps = self.budget(ctx)
        step = self.step_size if self.step_size is not None else 2.5 * eps / self.k
        logits = model(x)
        p_clean = F.softmax(logits.detach(), dim=1)
        x_adv = (x + self.init_std * torch.randn_like(x)).clamp(0.0, 1.0)
        net = differentiable_forward(unwrap(model))  # no gradient synchronisation needed
        with input_gradient_mode(model, x):
            for _ in range(self.k):
                xr = x_adv.detach().requires_grad_(True)
                kl = F.kl_div(F.log_softmax(net(xr), dim=1), p_clean, reduction="sum")
                (grad,) = torch.autograd.grad(kl, xr)
                x_adv = step_from(x, xr.detach(), grad, step, eps, self.norm)
        robust = F.kl_div(F.log_softmax(model(x_adv.detach()), dim=1), F.softmax(logits, dim=1),
                          reduction="batchmean")
        return BatchOutput(F.cross_entropy(logits, y) + self.beta * robust, logits.detach())
