"""Training callbacks and TensorBoard logging (issue #16): every step and every epoch row
reach the hooks, the weights do not change with them, and `--tensorboard DIR` writes every
numeric metrics.jsonl field."""

from __future__ import annotations

import json
import sys

import pytest

from robustlab.cli import main
from robustlab.training import TrainConfig, train


class Recorder:
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.rows: list[dict] = []

    def on_step(self, step, loss) -> None:
        self.steps.append(step)
        self.losses.append(float(loss))

    def on_epoch(self, row) -> None:
        self.rows.append(row)


class EpochsOnly:
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def on_epoch(self, row) -> None:
        self.epochs.append(row["epoch"])


def _cfg(out, **kw) -> TrainConfig:
    return TrainConfig(dataset="synthetic", method="hybrid", eps=0.1, epochs=2, batch_size=50,
                       progress=False, out_dir=str(out), threads=1, lr=0.05, **kw)


@pytest.mark.integration  # two training runs
def test_callbacks_see_every_step_and_epoch_and_change_nothing(tmp_path):
    rec, epochs_only = Recorder(), EpochsOnly()
    with_cb = train(_cfg(tmp_path / "a"), callbacks=[rec, epochs_only])
    without = train(_cfg(tmp_path / "b"))
    steps_per_epoch = -(-with_cb.summary["n_train"] // 50)
    assert rec.steps == list(range(2 * steps_per_epoch))
    assert all(loss == loss and loss > 0 for loss in rec.losses)  # finite, positive
    on_disk = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").open()]
    assert rec.rows == on_disk and epochs_only.epochs == [1, 2]
    assert "alpha" in rec.rows[0] and "val_clean_acc" in rec.rows[0]  # the method's own logs
    assert with_cb.summary["weights_sha256"] == without.summary["weights_sha256"]


def test_tensorboard_logs_every_numeric_field(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, logs = tmp_path / "run", tmp_path / "tb"
    argv = ["train", "--dataset", "synthetic", "--method", "hybrid", "--eps", "0.1",
            "--epochs", "2", "--batch-size", "50", "--threads", "1", "--no-progress",
            "--out", str(out), "--tensorboard", str(logs)]
    assert main(argv) == 0
    events = EventAccumulator(str(logs))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    numeric = {k for k, v in rows[0].items()
               if isinstance(v, (int, float)) and k != "epoch"}
    assert {f"epoch/{k}" for k in numeric} <= tags and "step/loss" in tags
    logged = [e.value for e in events.Scalars("epoch/train_loss")]
    assert logged == pytest.approx([r["train_loss"] for r in rows], rel=1e-6)
    assert [e.step for e in events.Scalars("epoch/val_acc")] == [1, 2]


def test_tensorboard_missing_is_a_clear_error_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    argv = ["train", "--dataset", "synthetic", "--epochs", "1", "--no-progress",
            "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]
    assert main(argv) == 2
    assert "the tensorboard package is not installed" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
