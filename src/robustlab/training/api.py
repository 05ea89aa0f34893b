"""`robustlab.train(model, data, method=..., eps=...)`: train your own `nn.Module` on your own
tensors or DataLoader with any registered method, through the same loop as `robustlab train`
(same run folder, checkpoints, resume after a kill, health flags, callbacks).

`model` may also be a registered model name and `data` a registered dataset name; a name is
recorded as such, while a module / data of your own is recorded as "custom" in config.json.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.data import DataError
from robustlab.data.containers import DatasetSplits
from robustlab.data.in_memory import CUSTOM, fingerprint, splits_from_data
from robustlab.models.probe import check_model_for_training
from robustlab.runs.build import SPLIT_SEED
from robustlab.runs.config import TrainConfig
from robustlab.runs.folder import CONFIG, RunFolder, RunFolderError
from robustlab.runs.load import load_model
from robustlab.training.callbacks import Callback
from robustlab.training.loop import RunResult, default_run_dir
from robustlab.training.loop import train as train_config
from robustlab.training.recipes import AUTO, applied_recipe_line, configure


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
            Channels-last images (`[N, 28, 28, 1]`) are transposed with a note on stderr.
        method: a registered training method (`robustlab list methods`); eps: its budget in
            [0, 1] pixel units, required by adversarial methods (no default suits every
            dataset).
        val, test: held-out data in the same forms. Without `val`, `val_size` images (a
            field; default 10 % of your data) are carved from `data` with a fixed seed: the
            hybrid's adaptive weight and the health checks read it. Without `test`, the summary
            has no test accuracy.
        num_classes: K (default: the largest label + 1).
        recipe: a training recipe (`robustlab.training.recipes`): "auto" (the default: the
            recipe `robustlab train` applies for the dataset, norm and budget; for your own
            data chosen by the images' shape, e.g. 1x28x28 images at linf eps 0.3 get
            "mnist-linf"), "paper", "none" (the TrainConfig defaults), or a named one such as
            "mnist-linf" (applied to your data as written). The recipe applied is said in one
            line on stderr.
        out_dir: the run folder (default runs/DATASET-MODEL-METHOD-epsE-sSEED); resume /
            overwrite: as `robustlab train --resume / --overwrite`. Resuming data of your own
            needs the same tensors (config.json's `data_fingerprint`); resuming a finished run
            loads its final weights into `model` and returns it.
        **fields: any other `TrainConfig` field: epochs, lr, batch_size, seed, threads, ...;
            `extra_images=FILE, extra_teacher=RUN` (`extra_fraction=0.5`) add pseudo-labelled
            images to every batch (training/extra_data.py, docs/training.md).
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
                  method=method, eps=eps, out_dir=out_dir, recipe=recipe, fields=fields,
                  splits=splits)
    check_model_for_training(model if own_model else None, splits)  # one batch, before compute
    if resume:
        cfg = _check_resume_data(cfg)
    result = train_config(cfg, resume=resume, overwrite=overwrite, callbacks=callbacks,
                          model=model if own_model else None, data=splits)
    return _with_model(result, model if own_model else None, cfg)


def _with_model(result: RunResult, model: nn.Module | None, cfg: TrainConfig) -> RunResult:
    """A finished run resumed trains nothing: its final weights (digest-checked) are loaded
    into the caller's `model` (or the registered model), returned in eval mode as `.model`."""
    if result.model is not None:
        return result
    loaded = load_model(result.run_dir, model=model, device=cfg.device)
    return dataclasses.replace(result, model=loaded)


def _config(*, model: str, dataset: str, method: str, eps: float | None,
            out_dir: str | None, recipe: str | None, fields: dict[str, Any],
            splits: DatasetSplits | None) -> TrainConfig:
    """The run's validated `TrainConfig`; every bad field is a `ConfigError` naming it. The
    recipe is resolved as `robustlab train` resolves it (`auto` by default; for data of your
    own by the images' shape) and said on stderr in one line, whatever `progress` is."""
    if "data_fingerprint" in fields:
        raise ConfigError("data_fingerprint: computed by robustlab.train from the data passed; "
                          "expected no such keyword")
    given = {"model": model, "dataset": dataset, "method": method, **fields}
    if eps is not None:
        given["eps"] = eps
    if out_dir is not None:
        given["out_dir"] = str(out_dir)
    for name in ("extra_images", "extra_teacher"):  # files (extra_data.py) as paths too
        if isinstance(given.get(name), os.PathLike):
            given[name] = os.fspath(given[name])
    shape = None
    if splits is not None:  # data of your own: what resume compares, what `auto` goes by
        given["data_fingerprint"] = fingerprint(splits)
        shape = tuple(splits.train.x.shape[1:])
    asked = AUTO if recipe is None else recipe
    cfg = configure(given, asked, source="robustlab.train", image_shape=shape)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"robustlab.train: {applied_recipe_line(cfg, asked, image_shape=shape)}",
              file=sys.stderr, flush=True)
    return cfg


def _check_resume_data(cfg: TrainConfig) -> TrainConfig:
    """Before resuming a run trained on data passed from Python: the same data (fingerprint),
    or one line saying it is not. A run recorded before fingerprints existed resumes with a
    warning (its data cannot be checked)."""
    target = Path(cfg.out_dir or default_run_dir(cfg))
    if cfg.data_fingerprint is None or not (target / CONFIG).is_file():
        return cfg
    recorded = RunFolder(target).read_config()
    if "data_fingerprint" not in recorded:
        print(f"warning: run {target} recorded no fingerprint of its data (written before "
              "robustlab recorded one): cannot check that this is the data it was trained on",
              file=sys.stderr)
        return cfg.replace(data_fingerprint=None)
    old = recorded["data_fingerprint"]
    if old != cfg.data_fingerprint:
        raise RunFolderError(
            f"cannot resume {target}: it was trained on other data (config.json "
            f"data_fingerprint {str(old)[:19]}..., this data {cfg.data_fingerprint[:19]}...); "
            "pass the same train/val/test tensors, or overwrite=True to start again")
    return cfg
