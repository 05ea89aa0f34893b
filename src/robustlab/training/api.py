"""`robustlab.train(model, data, method=..., eps=...)`: train your own `nn.Module` on your own
tensors or DataLoader with any registered method, through the same loop as `robustlab train`
(same run folder, checkpoints, resume after a kill, health flags, callbacks).

`model` may also be a registered model name and `data` a registered dataset name; a name is
recorded as such, while a module / data of your own is recorded as "custom" in config.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.data import DataError
from robustlab.data.in_memory import CUSTOM, splits_from_data
from robustlab.runs.build import SPLIT_SEED
from robustlab.runs.config import TrainConfig
from robustlab.training.callbacks import Callback
from robustlab.training.loop import RunResult
from robustlab.training.loop import train as train_config
from robustlab.training.recipes import NONE, configure


def train(model: nn.Module | str, data: Any, *, method: str = "standard",
          eps: float | None = None, val: Any = None, test: Any = None,
          num_classes: int | None = None, recipe: str | None = None,
          out_dir: str | None = None, resume: bool = False, overwrite: bool = False,
          callbacks: Sequence[Callback] = (), **fields: Any) -> RunResult:
    """Train `model` on `data` with `method` and write a run folder; returns a `RunResult`
    (`.model` is the trained model in eval mode, `.summary`, `.metrics`, `.run_dir`).

    Args:
        model: an `nn.Module` taking [0, 1] images `[N, C, H, W]` and returning logits `[N, K]`
            (trained in place), or a registered model name ("lenet5", ...).
        data: the training data: `(x, y)` tensors or numpy arrays (float images in [0, 1],
            integer labels), a DataLoader (or any iterable) of `(x, y)` batches, or a
            registered dataset name ("mnist", ...). Iterables are read once into memory.
        method: a registered training method (`robustlab list methods`); eps: its budget in
            [0, 1] pixel units, required by adversarial methods (no default suits every
            dataset).
        val, test: held-out data in the same forms. Without `val`, `val_size` images (a
            field; default 10 % of your data) are carved from `data` with a fixed seed: the
            hybrid's adaptive weight and the health checks read it. Without `test`, the summary
            has no test accuracy.
        num_classes: K (default: the largest label + 1).
        recipe: a training recipe (`robustlab.training.recipes`): "auto" (the default for a
            registered dataset), "paper", "none" (the default for your own data, i.e. the
            TrainConfig defaults), or a named one such as "mnist-linf" (applied to your data as
            written).
        out_dir: the run folder (default runs/DATASET-MODEL-METHOD-epsE-sSEED); resume /
            overwrite: as `robustlab train --resume / --overwrite`.
        **fields: any other `TrainConfig` field: epochs, lr, batch_size, seed, threads, ...
    """
    named_data = isinstance(data, str)
    splits = None
    if not named_data:
        if data is None:
            raise DataError("data: no training data given")
        splits = splits_from_data(data, val, test, num_classes=num_classes,
                                  val_size=fields.get("val_size"), split_seed=SPLIT_SEED)
    elif val is not None or test is not None or num_classes is not None:
        raise ConfigError(f"val / test / num_classes: dataset {data!r} brings its own splits "
                          "and classes; pass them only with data of your own")
    own_model = isinstance(model, nn.Module)
    if not own_model and not isinstance(model, str):
        raise ConfigError(f"model: expected an nn.Module or a registered model name, got a "
                          f"{type(model).__name__}")
    cfg = _config(model=CUSTOM if own_model else model, dataset=data if named_data else CUSTOM,
                  method=method, eps=eps, out_dir=out_dir, recipe=recipe, fields=fields)
    return train_config(cfg, resume=resume, overwrite=overwrite, callbacks=callbacks,
                        model=model if own_model else None, data=splits)


def _config(*, model: str, dataset: str, method: str, eps: float | None,
            out_dir: str | None, recipe: str | None, fields: dict[str, Any]) -> TrainConfig:
    """The run's validated `TrainConfig`; every bad field is a `ConfigError` naming it."""
    given = {"model": model, "dataset": dataset, "method": method, **fields}
    if eps is not None:
        given["eps"] = eps
    if out_dir is not None:
        given["out_dir"] = str(out_dir)
    if recipe is None:
        recipe = NONE if dataset == CUSTOM else "auto"
    return configure(given, recipe, source="robustlab.train")
