"""The paper's hybrid method (dynamic adversarial augmentation + adaptive loss) and its ablations.

One class, registered under several names that differ only in their default options:

| name                 | budget schedule        | weight a                    | copies        |
|----------------------|------------------------|-----------------------------|---------------|
| `hybrid`             | eps/10 -> eps (linear) | adaptive (validation accs)  | PGD-2         |
| `hybrid-pgd`         | same as `hybrid` (kept for run folders and presets that name it)     |
| `hybrid-fgsm`        | eps/10 -> eps (linear) | adaptive                    | FGSM          |
| `hybrid-fixed-eps`   | constant eps           | adaptive                    | PGD-2         |
| `hybrid-fixed-alpha` | eps/10 -> eps (linear) | fixed 0.5                   | PGD-2         |
| `mix`                | constant eps           | fixed 0.5 (Goodfellow 2015) | PGD-2         |

Each step trains on the clean batch and its adversarial copy at eps_t (D ∪ D_adv) with
`L = a * CE(f(x), y) + (1 - a) * CE(f(x_adv), y)` (`losses.hybrid_loss`, through
`losses.hybrid_backward`; a's update is `losses.next_alpha`). The copy comes from
`generator`: `pgd` with `steps` = 2 by default (random start, step 2.5 eps_t / steps). The
paper's FGSM (`generator=fgsm`,
registered as `hybrid-fgsm`) takes its input gradient from the clean loss's own backward pass
(~2 forward+backward per step, the floor of training on D ∪ D_adv) but overfits
catastrophically on MNIST at eps 0.3 (0 % PGD-40; docs/methods.md has the numbers; the guard
flags it), so it is no longer the default; `fgsm-rs` and `n-fgsm` are the other single-step
choices, and option `grad_align` (lambda, default 0 = off) adds GradAlign (Andriushchenko &
Flammarion 2020) at eps_t, its gradient added after `hybrid_backward`'s (`grad_align.py`;
docs/training.md, "GradAlign"; double backpropagation, so no CPU kernels). The ramp's
length defaults to the config's `eps_warmup` when that is set (the same warm-up as every
baseline), else half the epochs. After each epoch the method measures, on the
first `val_samples` validation images, clean accuracy and accuracy under the registry's PGD
(`val_steps` steps at the TARGET eps) and sets `a = acc_adv / (acc_adv + acc_clean)` (0.5 when
both are 0; `alpha_init` before the first measurement). Per-epoch logs: `eps` (budget used that
epoch; the last value for per-step schedules), `alpha` (weight used during the epoch),
`val_clean_acc`, `val_adv_acc` (measured at its end), `catastrophic_overfitting`.
See docs/methods.md for every option.
"""

from __future__ import annotations

from typing import Any, ClassVar

from robustlab.common.errors import ConfigError
from robustlab.common.vocabulary import SMOOTH_EPS_SCHEDULES, TRAIN_NORMS
from robustlab.registry import METHODS
from robustlab.training.methods.awp import awp_active, awp_step
from robustlab.training.methods.base import BatchOutput, TrainingMethod, label_smoothing
from robustlab.training.methods.eps_schedule import (
    SCHEDULES,
    AdaptiveEps,
    ramp_fraction,
    scheduled_eps,
)
from robustlab.training.methods.grad_align import (
    grad_align_backward,
    grad_align_loss,
    grad_align_options,
)
from robustlab.training.methods.losses import (
    hybrid_backward,
    hybrid_examples,
    hybrid_objective_on,
    next_alpha,
)
from robustlab.training.methods.options import (
    Option,
    check_float,
    generator_options,
    guard_options,
    l1_generator_refusal,
    with_defaults,
)
from robustlab.training.methods.validation import OverfitGuard, ValProbe


@METHODS.register("hybrid")
class Hybrid(TrainingMethod):
    """Hybrid adversarial training (see the module docstring)."""

    needs_eps = True
    needs_val = True
    cpu_kernels = True
    supports_awp = True
    norms = TRAIN_NORMS  # l1: the L1-APGD generator (or one sparse step), perturb.py
    OPTIONS: ClassVar[dict[str, Option]] = {
        # budget schedule
        "schedule": Option("linear", "choice", "how eps ramps from eps_start_frac x eps to eps",
                           choices=SCHEDULES),
        "ramp_epochs": Option(None, "float", "epochs of the ramp (null: the config's "
                              "eps_warmup, else half the epochs)", low=0.0, low_open=True,
                              allow_none=True),
        "eps_start_frac": Option(None, "float", "first eps as a fraction of eps (null: the "
                                 "config's eps_warmup_start)", low=0.0, high=1.0,
                                 low_open=True, allow_none=True),
        "per_step": Option(False, "bool", "change eps every step (smooth schedules only)"),
        "step_levels": Option(4, "int", "levels of the step schedule", low=1),
        "adaptive_factor": Option(2.0, "float", "adaptive schedule: eps multiplier",
                                  low=1.0, low_open=True),
        "adaptive_threshold": Option(0.5, "float", "adaptive schedule: validation adversarial "
                                     "accuracy that raises eps", low=0.0, high=1.0),
        # adversarial copies: PGD-2, since the paper's FGSM overfits catastrophically on
        # MNIST/LeNet-5 at eps 0.3 (0 % PGD-40, docs/methods.md); `hybrid-fgsm` keeps FGSM
        **generator_options(steps=2),
        # loss weight
        "alpha": Option("adaptive", "float", "weight of the clean loss: adaptive (the paper's "
                        "acc_adv / (acc_adv + acc_clean)) or fixed", low=0.0, high=1.0,
                        also=("adaptive",)),
        "alpha_init": Option(0.5, "float", "alpha before the first measurement",
                             low=0.0, high=1.0),
        "alpha_ema": Option(0.0, "float", "exponential smoothing of alpha (< 1)",
                            low=0.0, high=1.0),
        "alpha_min": Option(0.0, "float", "lower clip of alpha", low=0.0, high=1.0),
        "alpha_max": Option(1.0, "float", "upper clip of alpha (>= alpha_min)",
                            low=0.0, high=1.0),
        "update_every": Option(None, "int", "steps between alpha updates (null: once an "
                               "epoch)", low=1, allow_none=True),
        # validation measurements and the catastrophic-overfitting guard
        **guard_options(),
        # GradAlign (grad_align.py; docs/training.md)
        **grad_align_options(),
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if self.per_step and self.schedule not in SMOOTH_EPS_SCHEDULES:
            raise ConfigError(f"method_options.per_step: only smooth schedules "
                              f"({', '.join(SMOOTH_EPS_SCHEDULES)}) can change per step, got "
                              f"schedule {self.schedule!r}")
        if self.step_size is not None and self.generator == "fgsm":
            raise ConfigError("method_options.step_size: generator 'fgsm' always steps by eps; "
                              "use generator=fgsm-rs, n-fgsm or pgd for another step size")
        self.fixed_alpha = None if self.alpha == "adaptive" else self.alpha
        if self.alpha_ema == 1.0:
            raise ConfigError("method_options.alpha_ema: 1.0 would freeze alpha; expected < 1")
        check_float("alpha_max", self.alpha_max, self.alpha_min, 1.0)
        self.co_guard = OverfitGuard(self.co_drop, self.co_floor, self.co_fgsm_high, self.co_gap)
        self.alpha = self.fixed_alpha if self.fixed_alpha is not None else self.alpha_init
        self._eps_now = 0.0
        if self.grad_align > 0:  # double backpropagation: not under the CPU kernels
            self.cpu_kernels = False

    @classmethod
    def norm_refusal(cls, norm: str, options: dict[str, Any]) -> str | None:
        return l1_generator_refusal(cls.OPTIONS, options) if norm == "l1" else None

    # ------------------------------------------------------------------------ lifecycle
    def setup(self, ctx) -> None:
        self.eps = float(ctx.cfg.eps)
        self.norm = ctx.cfg.norm
        cfg_warmup = float(getattr(ctx.cfg, "eps_warmup", 0.0))
        start_frac = (self.eps_start_frac if self.eps_start_frac is not None
                      else getattr(ctx.cfg, "eps_warmup_start", 0.1))
        self.eps0 = start_frac * self.eps
        self.ramp = self.ramp_epochs or cfg_warmup or max(1, ctx.cfg.epochs // 2)
        self.adaptive_eps = (AdaptiveEps(self.eps, self.eps0, self.adaptive_factor,
                                         self.adaptive_threshold)
                             if self.schedule == "adaptive" else None)
        self.probe = ValProbe.from_split(ctx.val, self.val_samples, norm=self.norm,
                                         steps=self.val_steps, batch=self.val_batch,
                                         seed=ctx.cfg.seed)
        self.method_name = ctx.cfg.method

    def eps_at(self, progress: float) -> float:
        """Budget after `progress` epochs (closed-form schedules)."""
        return scheduled_eps(self.schedule, self.eps, self.eps0,
                             ramp_fraction(progress, self.ramp), self.step_levels)

    def start_epoch(self, ctx) -> dict[str, Any]:
        if self.adaptive_eps is not None:
            self._eps_now = self.adaptive_eps.value
        elif not self.per_step:
            self._eps_now = self.eps_at(ctx.epoch)
        logs: dict[str, Any] = {"alpha": self.alpha}
        if not self.per_step:
            logs["eps"] = self._eps_now
        return logs

    def train_step(self, model, optimizer, x, y, ctx) -> BatchOutput:
        if self.per_step:
            self._eps_now = self.eps_at(ctx.progress)
        eps_t, a = self._eps_now, self.alpha
        if awp_active(ctx):  # adversarial weight perturbation (awp.py)
            out = awp_step(self, model, optimizer, x, y, ctx, ctx.cfg.awp)
            self._step_alpha(model, ctx)
            return out
        optimizer.zero_grad(set_to_none=True)
        loss, logits = hybrid_backward(model, optimizer, x, y, eps=eps_t, alpha=a,
                                       norm=self.norm, generator=self.generator, steps=self.steps,
                                       step_size=self.step_size, noise_mult=self.noise_mult,
                                       label_smoothing=label_smoothing(ctx))
        if self.grad_align > 0:  # after hybrid_backward, which scales the .grad it finds
            loss = loss + grad_align_backward(model, x, y, eps=eps_t, lam=self.grad_align,
                                              norm=self.norm)
        optimizer.step()
        self._step_alpha(model, ctx)
        return BatchOutput(loss, logits)

    def _step_alpha(self, model, ctx) -> None:
        """The alpha update of `update_every` steps, after the step `ctx.step`."""
        if self.update_every is not None and (ctx.step + 1) % self.update_every == 0:
            self._update_alpha(self.probe.clean_acc(model), self.probe.pgd_acc(model, self.eps))

    def adversarial_examples(self, model, x, y, ctx):
        return hybrid_examples(model, x, y, eps=self._eps_now, norm=self.norm,
                               generator=self.generator, steps=self.steps,
                               step_size=self.step_size, noise_mult=self.noise_mult)

    def objective(self, model, x, y, x_adv, ctx) -> BatchOutput:
        loss, logits = hybrid_objective_on(model, x, y, x_adv, alpha=self.alpha,
                                           label_smoothing=label_smoothing(ctx))
        if getattr(self, "grad_align", 0) > 0:  # the GradAlign term of the plain step
            loss = loss + grad_align_loss(model, x, y, eps=self._eps_now, lam=self.grad_align,
                                          norm=self.norm)
        return BatchOutput(loss, logits.detach())

    def end_epoch(self, ctx) -> dict[str, Any]:
        model = ctx.model
        clean = self.probe.clean_acc(model)
        adv = self.probe.pgd_acc(model, self.eps)
        logs: dict[str, Any] = {"val_clean_acc": clean, "val_adv_acc": adv}
        if self.per_step:
            logs["eps"] = self._eps_now
        logs.update(self.co_guard.check(adv, lambda: self.probe.fgsm_acc(model, self.eps),
                                     method=self.method_name, epoch=ctx.epoch,
                                     at_target=self._eps_now >= self.eps, norm=self.norm))
        if self.adaptive_eps is not None:
            eps_t = self.adaptive_eps.value
            acc_t = adv if eps_t >= self.eps else self.probe.pgd_acc(model, eps_t)
            logs["val_adv_acc_eps_t"] = acc_t
            self.adaptive_eps.update(acc_t)
        self._update_alpha(clean, adv)
        if self.update_every is not None:
            logs["alpha_end"] = self.alpha
        return logs

    def _update_alpha(self, clean: float, adv: float) -> None:
        if self.fixed_alpha is not None:
            return
        self.alpha = next_alpha(self.alpha, clean, adv, ema=self.alpha_ema,
                                low=self.alpha_min, high=self.alpha_max)

    # --------------------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "guard": self.co_guard.state_dict(),
                "eps_t": None if self.adaptive_eps is None else self.adaptive_eps.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alpha = state["alpha"]
        self.co_guard.load_state_dict(state["guard"])
        if self.adaptive_eps is not None:
            self.adaptive_eps.value = state["eps_t"]


def _variant(name: str, doc: str, **defaults: Any) -> type[Hybrid]:
    """A `Hybrid` registered as `name` whose only difference is its default options."""
    cls = type(name.title().replace("-", ""), (Hybrid,),
               {"OPTIONS": with_defaults(Hybrid.OPTIONS, **defaults),
                "__doc__": doc, "__module__": __name__})
    return METHODS.register(name)(cls)

HybridFixedEps = _variant("hybrid-fixed-eps", "Ablation: adaptive alpha, eps fixed at the target.",
                          schedule="constant")
HybridFixedAlpha = _variant("hybrid-fixed-alpha", "Ablation: eps schedule, alpha fixed at 0.5.",
                            alpha=0.5)
HybridPGD = _variant("hybrid-pgd", "The hybrid with its default 2-step PGD generator (the name "
                     "older presets and run folders use; identical to `hybrid`).",
                     generator="pgd", steps=2)
HybridFGSM = _variant("hybrid-fgsm", "The hybrid with the paper's FGSM generator (overfits "
                      "catastrophically on MNIST at eps 0.3; see docs/methods.md).",
                      generator="fgsm")
Mix = _variant("mix", "Goodfellow et al. (2015)'s fixed mix (eps fixed, alpha = 0.5) with the "
               "hybrid's copies (PGD-2 by default; generator=fgsm for the original).",
               schedule="constant", alpha=0.5)
