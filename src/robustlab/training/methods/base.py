"""The interface every training method implements.

A method supplies the loss for one batch (`loss`). Methods whose optimisation step is not
"loss -> backward -> optimizer.step" (free adversarial training's minibatch replay, the hybrid
method's shared clean/adversarial backward) override `train_step` instead. Per-epoch work (budget
schedules, the hybrid's validation measurements) goes in `start_epoch` / `end_epoch`, whose
returned dicts are written to `metrics.jsonl`.

Adversarial weight perturbation (`TrainConfig.awp`, `awp.py`) needs the loss split in two:
a method with `supports_awp = True` implements `adversarial_examples` (x_adv at the current
weights) and `objective` (its loss at a fixed x_adv); they are used only on the AWP path
(`train_step` when `awp_active`), so the plain step stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from robustlab.common.vocabulary import ATTACK_NORMS
from robustlab.data import ArraySplit
from robustlab.runs.config import TrainConfig
from robustlab.training.methods.awp import awp_active, awp_step
from robustlab.training.methods.eps_schedule import EpsWarmup
from robustlab.training.methods.options import Option, resolve_options


@dataclass
class BatchOutput:
    """What one training step reports: the loss it minimised (scalar tensor) and the logits on
    the batch's clean inputs `[B, K]` used for the running training accuracy (None for a method
    with `reports_accuracy = False`)."""

    loss: torch.Tensor
    logits: torch.Tensor | None


@dataclass
class TrainContext:
    """Read-only facts a method may need. `progress` is the fraction of training done, in epochs
    (e.g. 2.5 = halfway through the third epoch), updated by the loop before every step."""

    cfg: TrainConfig
    model: nn.Module
    device: torch.device
    train: ArraySplit
    val: ArraySplit
    num_classes: int
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    progress: float = 0.0
    dist: Any = None  # distributed.DistContext: rank, world_size, shard(), sum()
    extra: dict[str, Any] = field(default_factory=dict)


def label_smoothing(ctx: TrainContext) -> float:
    """The run's label smoothing of the training cross-entropy (`TrainConfig.label_smoothing`;
    0 for a context without a config, as a method called from Python may be given)."""
    return float(getattr(getattr(ctx, "cfg", None), "label_smoothing", 0.0))


class TrainingMethod:
    """Base class. Subclasses set `name` via the registry decorator and override `loss`."""

    #: True for methods that need `TrainConfig.eps` (validated before any compute).
    needs_eps: bool = False
    #: True for methods that measure validation accuracy themselves (val_size must be > 0).
    needs_val: bool = False
    #: False for methods whose model is not a classifier (the denoising autoencoder): the loop
    #: then logs no train/val/test accuracy (null in metrics.jsonl and summary.json).
    reports_accuracy: bool = True
    #: True for methods whose training step may run under the CPU kernels of
    #: `robustlab.accel.cpu_kernels` (equal values, faster 2x2 max-pool / ReLU / 1-channel
    #: convolution on CPU models that have them). Off by default, and for double
    #: backpropagation (`gradient-reg`; an instance with `grad_align > 0` sets it False): the
    #: kernels' backward is once-differentiable.
    cpu_kernels: bool = False
    #: True for methods that implement `adversarial_examples` and `objective`, the two halves
    #: adversarial weight perturbation needs (`TrainConfig.awp`, checked before any compute).
    supports_awp: bool = False
    #: The norms the method trains at (`TrainConfig.norm`, checked before any compute): linf
    #: and l2 unless the method declares more (the vocabulary's TRAIN_NORMS: l1 too).
    norms: ClassVar[tuple[str, ...]] = ATTACK_NORMS

    #: The method's options, declared once (`robustlab.training.methods.options.Option`):
    #: `__init__` checks the given values against them and sets each as an attribute.
    OPTIONS: ClassVar[dict[str, Option]] = {}

    def __init__(self, **options: Any) -> None:
        vars(self).update(resolve_options(self.name, self.OPTIONS, options))

    @classmethod
    def norm_refusal(cls, norm: str, options: dict[str, Any]) -> str | None:
        """Why the method cannot train at `norm` (one of its `norms`) with the method options
        `options` (one line naming the option), or None; `TrainConfig.validate` asks."""
        return None

    def setup(self, ctx: TrainContext) -> None:
        """Called once before training (and again on resume, before `load_state_dict`)."""

    def start_epoch(self, ctx: TrainContext) -> dict[str, Any]:
        """Called before each epoch; returns values to log for that epoch."""
        return {}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             ctx: TrainContext) -> BatchOutput:
        raise NotImplementedError

    def adversarial_examples(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                             ctx: TrainContext) -> torch.Tensor:
        """The step's x_adv `[B, C, H, W]` at the current weights (AWP path only)."""
        raise NotImplementedError(f"method {self.name!r} does not support awp")

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  x_adv: torch.Tensor, ctx: TrainContext) -> BatchOutput:
        """The method's loss on the batch and a fixed x_adv (AWP path only); the logits are
        those `loss` reports, detached."""
        raise NotImplementedError(f"method {self.name!r} does not support awp")

    def train_step(self, model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                   y: torch.Tensor, ctx: TrainContext) -> BatchOutput:
        if awp_active(ctx):
            return awp_step(self, model, optimizer, x, y, ctx, ctx.cfg.awp)
        optimizer.zero_grad(set_to_none=True)
        out = self.loss(model, x, y, ctx)
        out.loss.backward()
        optimizer.step()
        return out

    def end_epoch(self, ctx: TrainContext) -> dict[str, Any]:
        """Called after each epoch (model in train mode); returns values to log for that epoch."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """JSON-able (or tensor) state needed to resume bit-identically."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} has no state to load, got {sorted(state)}")


class AdversarialMethod(TrainingMethod):
    """A method that trains against perturbations within a budget (`TrainConfig.eps`).

    `setup` reads eps, the norm and the config's budget warm-up (`eps_warmup`, shared by every
    adversarial method); `budget(ctx)` is the budget of the current step (eps once the warm-up
    is over). The budget of the epoch's last step is logged as `eps`.
    """

    needs_eps = True
    cpu_kernels = True

    def setup(self, ctx: TrainContext) -> None:
        cfg = ctx.cfg
        self.eps, self.norm = float(cfg.eps), cfg.norm
        self.warmup = EpsWarmup(self.eps, getattr(cfg, "eps_warmup", 0.0),
                                getattr(cfg, "eps_warmup_start", 0.1),
                                getattr(cfg, "eps_warmup_schedule", "linear"))
        self.eps_last = self.warmup.eps_at(0.0)

    def budget(self, ctx: TrainContext) -> float:
        """The budget (pixel units) for the step at `ctx.progress`."""
        self.eps_last = self.warmup.eps_at(ctx.progress)
        return self.eps_last

    def at_target(self, ctx: TrainContext) -> bool:
        """Whether the warm-up is over at the end of the epoch `ctx.epoch`."""
        return self.warmup.done(ctx.epoch + 1)

    def end_epoch(self, ctx: TrainContext) -> dict[str, Any]:
        return {"eps": self.eps_last}
