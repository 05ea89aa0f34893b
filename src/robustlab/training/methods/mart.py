"""MART (Wang et al. 2020, "misclassification aware adversarial training"): `mart`.

Adversarial examples: PGD-`k` (10) on cross-entropy with random start, step 2.5 eps / k.
Loss: `BCE(f(x_adv), y) + beta * mean_i KL(p(x_i) || p(x_adv_i)) * (1 - p_y(x_i))`, where the
boosted CE `BCE = CE(f(x_adv), y) - log(1 - max_{j != y} p_j(x_adv))` also pushes down the
strongest wrong class. `beta` defaults to 6. The budget follows `eps_warmup`
(`AdversarialMethod`). Per-epoch log: `eps`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from robustlab.registry import METHODS
from robustlab.training.methods.base import AdversarialMethod, BatchOutput
from robustlab.training.methods.options import Option
from robustlab.training.methods.perturb import pgd

_TINY = 1e-12


@METHODS.register("mart")
class Mart(AdversarialMethod):
    OPTIONS: ClassVar[dict[str, Option]] = {
        "beta": Option(6.0, "float", "weight of the misclassification-aware KL term", low=0.0),
        "k": Option(10, "int", "PGD steps", low=1),
        "step_size": Option(None, "float", "PGD step (null: 2.5 eps / k)", low=0.0,
                            low_open=True, allow_none=True),
    }

    def loss(self, model, x, y, ctx) -> BatchOutput:
        eps = self.budget(ctx)
        step = self.step_size if self.step_size is not None else 2.5 * eps / self.k
        x_adv = pgd(model, x, y, eps, self.norm, steps=self.k, step=step)
        logits = model(x)
        logits_adv = model(x_adv)
        p_adv = F.softmax(logits_adv, dim=1)
        wrong = p_adv.scatter(1, y[:, None], 0.0).amax(dim=1)  # strongest wrong class
        bce = F.cross_entropy(logits_adv, y) - torch.log(1.0 - wrong + _TINY).mean()
        p_clean = F.softmax(logits, dim=1)
        kl = (p_clean * (torch.log(p_clean + _TINY) - torch.log(p_adv + _TINY))).sum(dim=1)
        true_p = p_clean.gather(1, y[:, None])[:, 0]
        loss = bce + self.beta * (kl * (1.0 - true_p)).mean()
        return BatchOutput(loss, logits.detach())
