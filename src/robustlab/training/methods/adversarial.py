"""Adversarial training on adversarial examples only: `pgd-at`, `fgsm-rs`, `n-fgsm`.

One class, registered under three names with different default generators:

- `pgd-at` (Madry et al. 2018): PGD-`k` (default 10) with random start, step `2.5 eps / k`.
- `fgsm-rs` ("fast" adversarial training, Wong et al. 2020): random start uniform in the
  eps-ball, one step of 1.25 eps, projected back.
- `n-fgsm` (de Jorge et al. 2022): noise from the 2 eps ball, one step of eps, no projection.

Loss: `CE(f(x_adv), y)`. The logits reported to the loop (its running `train_acc`) are those on
`x_adv`: the method never forwards the clean batch, and an extra forward only for a statistic
would cost ~1/3 of a training step. Single-step variants watch for catastrophic overfitting
(validation PGD accuracy each epoch, option `guard`, on by default for them); its cost counts
in the epoch time. Every generator runs at the step's budget (`AdversarialMethod.budget`:
the config's `eps_warmup` ramp, then eps). Logs per epoch: `eps` (at the epoch's last step),
and with the guard `val_clean_acc`, `val_adv_acc`, `catastrophic_overfitting`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F

from robustlab.common.errors import ConfigError
from robustlab.registry import METHODS
from robustlab.training.methods.base import AdversarialMethod, BatchOutput
from robustlab.training.methods.options import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    resolve_options,
)
from robustlab.training.methods.perturb import GENERATORS, generate
from robustlab.training.methods.validation import OverfitGuard, ValProbe


@METHODS.register("pgd-at")
class AdversarialTraining(AdversarialMethod):
    """Train on `generator` examples at eps only (see the module docstring)."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "generator": "pgd", "k": 10, "step_size": None, "random_start": True,
        "noise_mult": 2.0, "guard": False, "val_samples": 1000, "val_steps": 10,
        "val_batch": 500, "co_drop": 0.3, "co_floor": 0.05, "co_fgsm_high": 0.5,
    }

    def __init__(self, **options: Any) -> None:
        o = resolve_options(self.name, self.DEFAULTS, options)
        self.generator = check_choice("generator", o["generator"], GENERATORS)
        self.k = check_int("k", o["k"], 1)
        self.step_size = check_float("step_size", o["step_size"], 0.0, low_open=True,
                                     allow_none=True)
        if self.step_size is not None and self.generator == "fgsm":
            raise ConfigError("method_options.step_size: generator 'fgsm' always steps by eps")
        self.random_start = check_bool("random_start", o["random_start"])
        self.noise_mult = check_float("noise_mult", o["noise_mult"], 0.0)
        self.use_guard = check_bool("guard", o["guard"])
        self.val_samples = check_int("val_samples", o["val_samples"], 1)
        self.val_steps = check_int("val_steps", o["val_steps"], 1)
        self.val_batch = check_int("val_batch", o["val_batch"], 1)
        self.guard = OverfitGuard(check_float("co_drop", o["co_drop"], 0.0, 1.0),
                                  check_float("co_floor", o["co_floor"], 0.0, 1.0),
                                  check_float("co_fgsm_high", o["co_fgsm_high"], 0.0, 1.0))

    def setup(self, ctx) -> None:
        super().setup(ctx)
        self.method_name = ctx.cfg.method
        self.probe = (ValProbe.from_split(ctx.val, self.val_samples, norm=self.norm,
                                          steps=self.val_steps, batch=self.val_batch,
                                          seed=ctx.cfg.seed) if self.use_guard else None)

    def loss(self, model, x, y, ctx) -> BatchOutput:
        x_adv = generate(self.generator, model, x, y, self.budget(ctx), self.norm, steps=self.k,
                         step=self.step_size, noise_mult=self.noise_mult,
                         random_start=self.random_start)
        logits = model(x_adv)
        return BatchOutput(F.cross_entropy(logits, y), logits.detach())

    def end_epoch(self, ctx) -> dict[str, Any]:
        logs = super().end_epoch(ctx)
        if self.probe is None:
            return logs
        model = ctx.model
        adv = self.probe.pgd_acc(model, self.eps)
        logs.update({"val_clean_acc": self.probe.clean_acc(model), "val_adv_acc": adv})
        logs.update(self.guard.check(adv, lambda: self.probe.fgsm_acc(model, self.eps),
                                     method=self.method_name, epoch=ctx.epoch,
                                     at_target=self.at_target(ctx)))
        return logs

    def state_dict(self) -> dict[str, Any]:
        return {"guard": self.guard.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.guard.load_state_dict(state["guard"])


def _variant(name: str, doc: str, **defaults: Any) -> type[AdversarialTraining]:
    cls = type(name.title().replace("-", ""), (AdversarialTraining,),
               {"DEFAULTS": {**AdversarialTraining.DEFAULTS, **defaults},
                "__doc__": doc, "__module__": __name__})
    return METHODS.register(name)(cls)


FgsmRs = _variant("fgsm-rs", "Fast adversarial training (Wong et al. 2020).",
                  generator="fgsm-rs", guard=True)
NFgsm = _variant("n-fgsm", "N-FGSM adversarial training (de Jorge et al. 2022).",
                 generator="n-fgsm", guard=True)
