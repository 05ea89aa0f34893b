"""Weight averaging: an exponential moving average (EMA) of the weights, or stochastic weight
averaging (SWA). The averaged weights are evaluated instead of the last iterate (they are
smoother, more robust and overfit less: Izmailov et al. 2018, Rebuffi et al. 2021).

- `EMA(model, decay)`: after every optimizer step, `avg <- d_t * avg + (1 - d_t) * w` with the
  warm-up of TensorFlow's `tf.train.ExponentialMovingAverage(decay, num_updates=t)`:
  `d_t = min(decay, (1 + t) / (10 + t))`, t the number of updates before this one, so early
  averages are not dominated by the random initial weights. Floating buffers (batch-norm
  running mean / var) are averaged with the same decay; integer buffers (`num_batches_tracked`)
  are copied.
- `SWA(model)`: the equal-weight running mean of the weights given to `update` (the loop gives
  the epoch-end weights from `swa_start` on): `avg <- avg + (w - avg) / (n + 1)`, the rule of
  `torch.optim.swa_utils.AveragedModel` (floating buffers are averaged alike, integer ones
  copied). The batch-norm statistics of the averaged weights are then recomputed by one pass
  over the training batches in train mode without gradients, with
  `torch.optim.swa_utils.update_bn` itself (it resets the running statistics and accumulates an
  equal-weight mean over the batches); models without batch-norm are left as they are.

Both keep their average as a plain state dict (names as `model.state_dict()`), so it goes into
the checkpoint as it is and a resumed run continues bit for bit; `AveragedModel` would hold a
second module and name its tensors `module.*`, hence the few lines of averaging here. Give
them the unwrapped model (never the DDP wrapper, `distributed.unwrap`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from robustlab.common.vocabulary import AVERAGING_EMA, AVERAGING_SWA


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class WeightAverage:
    """The average of a model's weights (`state`: a state dict), its count of updates and a
    module holding it (`averaged_model`)."""

    kind = ""

    def __init__(self, model: nn.Module) -> None:
        self.state = _copy_state(model)
        self.count = 0  # updates so far
        self._model: nn.Module | None = None  # `averaged_model`'s module, for `count` updates
        self._model_count = -1

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, value in model.state_dict().items():
            avg = self.state[name]
            if avg.is_floating_point():
                self._average(avg, value.detach())
            else:
                avg.copy_(value)
        self.count += 1

    def _average(self, avg: torch.Tensor, value: torch.Tensor) -> None:
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """Whether there is an average yet (SWA: not before `start`)."""
        return self.count > 0

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step (EMA averages here)."""

    def after_epoch(self, model: nn.Module, *, epochs_done: int) -> None:
        """Called at the end of every epoch (SWA averages here)."""

    def averaged_model(self, model: nn.Module) -> nn.Module:
        """A copy of `model` (in eval mode) holding the averaged weights; kept until the next
        update."""
        if self._model is None or self._model_count != self.count:
            self._model = copy.deepcopy(model)
            for p in self._model.parameters():
                p.grad = None
                p.requires_grad_(False)
            self._model.load_state_dict(self.state)
            self._finish(self._model)
            self._model.eval()
            self._model_count = self.count
        return self._model

    def _finish(self, averaged: nn.Module) -> None:
        """What the averaged weights need before use (SWA: batch-norm statistics)."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "state": self.state}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        if saved.get("kind") != self.kind or set(saved["state"]) != set(self.state):
            raise ValueError(f"the checkpoint's weight average ({saved.get('kind')}) is not "
                             f"this run's ({self.kind})")
        # on the model's device (a checkpoint's tensors are on the CPU), a copy of each
        self.state = {k: saved["state"][k].to(self.state[k].device, copy=True)
                      for k in self.state}
        self.count = int(saved["count"])
        self._model = None


class EMA(WeightAverage):
    """Exponential moving average with TensorFlow's num_updates warm-up (module docstring)."""

    kind = AVERAGING_EMA

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__(model)
        self.decay = decay
        self._decay_now = decay  # d_t of the update in progress

    def current_decay(self) -> float:
        """d_t = min(decay, (1 + t) / (10 + t)), t = updates so far (tf.train.
        ExponentialMovingAverage's num_updates rule)."""
        return min(self.decay, (1 + self.count) / (10 + self.count))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self._decay_now = self.current_decay()
        super().update(model)

    def after_step(self, model: nn.Module) -> None:
        self.update(model)

    def _average(self, avg: torch.Tensor, value: torch.Tensor) -> None:
        # lerp: avg + (1 - d) * (value - avg), exact when value == avg (a constant model)
        avg.lerp_(value.to(avg.dtype), 1.0 - self._decay_now)


class SWA(WeightAverage):
    """Equal-weight running mean (AveragedModel's rule) of the epoch-end weights once more than
    `start` epochs are done; batch-norm statistics recomputed over `bn_batches()` (an iterable
    of input batches, or of (x, y) pairs) for the averaged weights."""

    kind = AVERAGING_SWA

    def __init__(self, model: nn.Module, start: float,
                 bn_batches: Callable[[], Iterable[Any]], seed: int = 0) -> None:
        super().__init__(model)
        self.start = start
        self.bn_batches = bn_batches
        self.seed = seed  # of the random numbers the pass draws (dropout), on a forked RNG

    def after_epoch(self, model: nn.Module, *, epochs_done: int) -> None:
        if epochs_done > self.start:
            self.update(model)

    def _average(self, avg: torch.Tensor, value: torch.Tensor) -> None:
        if self.count == 0:
            avg.copy_(value)
        else:
            avg.add_((value.to(avg.dtype) - avg) / (self.count + 1))

    def _finish(self, averaged: nn.Module) -> None:
        if not has_batch_norm(averaged):
            return
        # a pass in train mode draws dropout masks: from a seeded fork of the global RNG, so
        # the statistics are the same whenever it runs (a resumed run) and the run's RNG is
        # left as it was
        cuda = sorted({t.device.index or 0 for t in averaged.state_dict().values()
                       if t.is_cuda})
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            update_bn(self.bn_batches(), averaged)


def create_averager(kind: str | None, model: nn.Module, *, decay: float = 0.0,
                    start: float | None = None,
                    bn_batches: Callable[[], Iterable[Any]] | None = None,
                    seed: int = 0) -> WeightAverage | None:
    """The averager of a run's `averaging` ("ema" with `decay`, "swa" from `start` epochs on,
    its batch-norm pass over `bn_batches()` seeded with `seed`), or None for the last iterate
    only."""
    if kind == AVERAGING_EMA:
        return EMA(model, decay)
    if kind == AVERAGING_SWA:
        return SWA(model, start or 0.0, bn_batches or (lambda: ()), seed)
    return None
