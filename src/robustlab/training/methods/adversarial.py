"""Adversarial training on adversarial examples only: `pgd-at`, `fgsm-rs`, `n-fgsm`.

One class, registered under three names with different default generators:

- `pgd-at` (Madry et al. 2018): PGD (`steps`, default 10) with random start, step `2.5 eps / steps`.
- `fgsm-rs` ("fast" adversarial training, Wong et al. 2020): random start uniform in the
  eps-ball, one step of 1.25 eps, projected back.
- `n-fgsm` (de Jorge et al. 2022): noise from the 2 eps ball, one step of eps, no projection.

Loss: `CE(f(x_adv), y)` (`losses.pgd_at_loss`). The logits reported to the loop (its running
`train_acc`) are those on `x_adv`: the method never forwards the clean batch, and an extra
forward only for a statistic
would cost ~1/3 of a training step. Single-step variants watch for catastrophic overfitting
(validation PGD accuracy each epoch, option `guard`, on by default for them); its cost counts
in the epoch time. Every generator runs at the step's budget (`AdversarialMethod.budget`:
the config's `eps_warmup` ramp, then eps). Logs per epoch: `eps` (at the epoch's last step),
and with the guard `val_clean_acc`, `val_adv_acc`, `catastrophic_overfitting`.
Option `grad_align` (lambda, default 0 = off) adds GradAlign (Andriushchenko & Flammarion 2020)
to the loss at the step's budget, by double backpropagation and so without the CPU kernels
(`grad_align.py`; docs/training.md, "GradAlign").
"""

from __future__ import annotations

from typing import Any, ClassVar

from robustlab.common.errors import ConfigError
from robustlab.common.vocabulary import ATTACK_NORMS, TRAIN_NORMS
from robustlab.registry import METHODS
from robustlab.training.methods.base import AdversarialMethod, BatchOutput, label_smoothing
from robustlab.training.methods.grad_align import grad_align_loss, grad_align_options
from robustlab.training.methods.losses import pgd_at_examples, pgd_at_loss, pgd_at_objective
from robustlab.training.methods.options import (
    Option,
    generator_options,
    guard_options,
    l1_generator_refusal,
    with_defaults,
)
from robustlab.training.methods.validation import OverfitGuard, ValProbe


@METHODS.register("pgd-at")
class AdversarialTraining(AdversarialMethod):
    """Train on `generator` examples at eps only (see the module docstring)."""

    supports_awp = True
    norms = TRAIN_NORMS  # l1: the L1-APGD generator (or one sparse step), perturb.py

    OPTIONS: ClassVar[dict[str, Option]] = {
        **generator_options(steps=10),
        "random_start": Option(True, "bool", "PGD starts at a random point of the ball"),
        "guard": Option(False, "bool", "measure validation accuracy each epoch and flag "
                        "catastrophic overfitting (on for fgsm-rs and n-fgsm)"),
        **guard_options(),
        **grad_align_options(),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.step_size is not None and self.generator == "fgsm":
            raise ConfigError("method_options.step_size: generator 'fgsm' always steps by eps")
        if self.grad_align > 0:  # double backpropagation: not under the CPU kernels
            self.cpu_kernels = False
        self.co_guard = OverfitGuard(self.co_drop, self.co_floor, self.co_fgsm_high, self.co_gap)

    @classmethod
    def norm_refusal(cls, norm: str, options: dict[str, Any]) -> str | None:
        return l1_generator_refusal(cls.OPTIONS, options) if norm == "l1" else None

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.method_name = ctx.cfg.method
        self.probe = (ValProbe.from_split(ctx.val, self.val_samples, norm=self.norm,
                                          steps=self.val_steps, batch=self.val_batch,
                                          seed=ctx.cfg.seed) if self.guard else None)

    def loss(self, model, x, y, ctx) -> BatchOutput:
        loss, logits = pgd_at_loss(model, x, y, eps=self.budget(ctx), norm=self.norm,
                                   steps=self.steps, step_size=self.step_size,
                                   random_start=self.random_start, generator=self.generator,
                                   noise_mult=self.noise_mult, return_logits=True,
                                   label_smoothing=label_smoothing(ctx))
        if self.grad_align > 0:  # at the step's budget (grad_align.py)
            loss = loss + grad_align_loss(model, x, y, eps=self.eps_last, lam=self.grad_align,
                                          norm=self.norm)
        return BatchOutput(loss, logits)

    def adversarial_examples(self, model, x, y, ctx):
        return pgd_at_examples(model, x, y, eps=self.budget(ctx), norm=self.norm,
                               steps=self.steps, step_size=self.step_size,
                               random_start=self.random_start, generator=self.generator,
                               noise_mult=self.noise_mult)

    def objective(self, model, x, y, x_adv, ctx) -> BatchOutput:
        logits = model(x_adv)
        loss = pgd_at_objective(logits, y, label_smoothing=label_smoothing(ctx))
        if getattr(self, "grad_align", 0) > 0:  # the GradAlign term of `loss`, same budget
            loss = loss + grad_align_loss(model, x, y, eps=self.eps_last, lam=self.grad_align,
                                          norm=self.norm)
        return BatchOutput(loss, logits.detach())

    def end_epoch(self, ctx) -> dict[str, Any]:
        logs = super().end_epoch(ctx)
        if self.probe is None:
            return logs
        model = ctx.model
        adv = self.probe.pgd_acc(model, self.eps)
        logs.update({"val_clean_acc": self.probe.clean_acc(model), "val_adv_acc": adv})
        logs.update(self.co_guard.check(adv, lambda: self.probe.fgsm_acc(model, self.eps),
                                     method=self.method_name, epoch=ctx.epoch,
                                     at_target=self.at_target(ctx), norm=self.norm))
        return logs

    def state_dict(self) -> dict[str, Any]:
        return {"guard": self.co_guard.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.co_guard.load_state_dict(state["guard"])


def _variant(name: str, doc: str, **defaults: Any) -> type[AdversarialTraining]:
    # fgsm-rs and n-fgsm: their generators' noise balls are Linf / L2 ones (no l1)
    cls = type(name.title().replace("-", ""), (AdversarialTraining,),
               {"OPTIONS": with_defaults(AdversarialTraining.OPTIONS, **defaults),
                "__doc__": doc, "__module__": __name__, "norms": ATTACK_NORMS})
    return METHODS.register(name)(cls)


FgsmRs = _variant("fgsm-rs", "Fast adversarial training (Wong et al. 2020).",
                  generator="fgsm-rs", guard=True)
NFgsm = _variant("n-fgsm", "N-FGSM adversarial training (de Jorge et al. 2022).",
                 generator="n-fgsm", guard=True)
