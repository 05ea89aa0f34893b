"""Hooks the training loop calls, for experiment tracking (TensorBoard here; W&B, MLflow ...
in a few lines of your own, see docs/training.md).

A callback is any object with either or both methods:

- `on_step(step, loss)`: after every optimiser step on the main process; `step` counts from 0
  over the whole run, `loss` is the step's loss tensor (0-d, detached; call `.item()` only
  when you log it: it waits for the device).
- `on_epoch(row)`: after each epoch, with the epoch's metrics.jsonl row (a dict of JSON
  values: epoch, train_loss, val_acc, lr, eps, alpha, ...), once it is on disk.

Callbacks observe; they never change what is trained (the same seed gives the same weights
with or without them).
"""

from __future__ import annotations

from numbers import Real
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor


class Callback(Protocol):  # both methods optional: the loop checks with getattr
    def on_step(self, step: int, loss: Tensor) -> None: ...

    def on_epoch(self, row: dict[str, Any]) -> None: ...


class TensorBoardLogger:
    """Every numeric metrics.jsonl field per epoch (`epoch/<field>`, x = epoch) and the loss
    every `every` steps (`step/loss`), as TensorBoard event files under `log_dir`. Needs the
    `tensorboard` package (`pip install 'robustlab[tensorboard]'`), checked here, before
    training starts."""

    def __init__(self, log_dir: str | Path, *, every: int = 50) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise ImportError(f"--tensorboard {log_dir}: the tensorboard package is not "
                              "installed (pip install 'robustlab[tensorboard]')") from err
        self.writer = SummaryWriter(str(log_dir))
        self.every = every

    def on_step(self, step: int, loss: Tensor) -> None:
        if step % self.every == 0:
            self.writer.add_scalar("step/loss", float(loss), step)

    def on_epoch(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if isinstance(value, Real) and key != "epoch":  # bools log as 0/1
                self.writer.add_scalar(f"epoch/{key}", float(value), row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
