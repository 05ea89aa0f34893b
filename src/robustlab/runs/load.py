"""Reopen a finished run: its config, its trained model and its data splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from robustlab.common.checks import check_choice
from robustlab.common.device import resolve_device
from robustlab.common.errors import ConfigError
from robustlab.common.vocabulary import RUN_WEIGHTS, WEIGHTS_AVERAGED, WEIGHTS_LAST
from robustlab.data.in_memory import CUSTOM
from robustlab.runs.build import (
    RunData,
    build_model,
    build_model_from_kwargs,
    load_run_data,
    prepare_model,
)
from robustlab.runs.checkpoint import AVERAGED_DIGEST_KEY, WeightsError, load_weights
from robustlab.runs.config import TrainConfig
from robustlab.runs.folder import AVERAGED_WEIGHTS, WEIGHTS, RunFolder, RunFolderError
from robustlab.runs.saved import (
    check_summary_digest,
    open_run,
    read_run_config,
    recorded_model_kwargs,
)

__all__ = ["LoadedRun", "load_model", "load_run", "load_run_weights", "read_run_config"]


@dataclass
class LoadedRun:
    """`weights`: the weights loaded, "averaged" (then `cfg.averaging` says how: "ema" or
    "swa") or "last"."""

    folder: RunFolder
    cfg: TrainConfig
    model: nn.Module
    data: RunData
    weights: str = WEIGHTS_LAST


def load_run(path: str | Path, *, device: str = "auto", data_dir: str | None = None,
             weights: str = WEIGHTS_AVERAGED) -> LoadedRun:
    """Model in eval mode with the run's final weights, plus its data (same splits as training).

    `weights`: "averaged" (the default) loads the averaged weights (model-averaged.safetensors)
    of a run trained with `ema` or `swa_start`, and silently the last weights of a run that did
    not average (every run written before averaging existed); "last" the last iterate
    (model.safetensors). `LoadedRun.weights` says which were loaded."""
    check_choice("weights", weights, RUN_WEIGHTS, error=ConfigError)
    folder, cfg = open_run(path, data_dir=data_dir)
    if CUSTOM in (cfg.dataset, cfg.model):
        raise RunFolderError(f"run {folder.path} trained on a model or data passed from Python "
                             "(recorded as 'custom'), which cannot be rebuilt from the folder: "
                             "use robustlab.load_model(RUN[, model=MyNet()]) and evaluate on "
                             "your data with robustlab.evaluate(model, x, y, eps=...)")
    dev = resolve_device(device)
    data = load_run_data(cfg.replace(compile=False), dev)
    model = build_model(cfg.replace(compile=False), data.info, dev)
    used = load_run_weights(folder, cfg, model, weights)
    model.eval()
    return LoadedRun(folder, cfg, model, data, weights=used)


def load_run_weights(folder: RunFolder, cfg: TrainConfig, model: nn.Module,
                     weights: str = WEIGHTS_AVERAGED) -> str:
    """Load the run's `weights` ("averaged" or "last", as `load_run`) into `model`, checked
    against summary.json's digest of that file; returns which were loaded. A finished run whose
    summary records averaged weights but whose file is gone is a `WeightsError`."""
    averaged = folder.file(AVERAGED_WEIGHTS)
    if weights == WEIGHTS_AVERAGED and cfg.averaging is not None:
        if averaged.is_file():
            check_summary_digest(folder, load_weights(averaged, model), key=AVERAGED_DIGEST_KEY,
                                 name=AVERAGED_WEIGHTS)
            return WEIGHTS_AVERAGED
        if folder.is_complete and folder.read_summary().get(AVERAGED_DIGEST_KEY) is not None:
            raise WeightsError(f"weights file {averaged} is missing: the run's summary.json "
                               "records averaged weights; load the last ones with "
                               "weights='last' (--run-weights last)")
    check_summary_digest(folder, load_weights(folder.file(WEIGHTS), model))
    return WEIGHTS_LAST


def load_model(path: str | Path, *, model: nn.Module | None = None, device: str = "auto",
               weights: str = WEIGHTS_AVERAGED) -> nn.Module:
    """The run's trained model in eval mode, rebuilt from config.json alone (no dataset on
    disk), with the final weights checked against summary.json's digest (`weights`: as
    `load_run`, the averaged weights by default when the run has them). A run that trained a
    model of your own (`robustlab.train(net, ...)`, recorded as "custom") needs `model`: a
    fresh instance of the same class, into which the weights are loaded (keys and shapes must
    match). Runs written before config.json recorded `model_kwargs` fall back to `load_run`
    (which reads the dataset)."""
    check_choice("weights", weights, RUN_WEIGHTS, error=ConfigError)
    folder, cfg = open_run(path)
    dev = resolve_device(device)
    if model is not None or cfg.model == CUSTOM:
        model = _own_model(folder, cfg, model, dev)
    else:
        kwargs = recorded_model_kwargs(folder)
        if kwargs is None:
            return load_run(path, device=device, weights=weights).model
        model = build_model_from_kwargs(cfg.replace(compile=False), kwargs, dev)
    load_run_weights(folder, cfg, model, weights)
    return model.eval()


def _own_model(folder: RunFolder, cfg: TrainConfig, model: nn.Module | None,
               device) -> nn.Module:
    if cfg.model != CUSTOM:
        raise ConfigError(f"model: run {folder.path} trained the registered model "
                          f"{cfg.model!r}; call load_model without model=")
    if model is None:
        raise ConfigError(f"model: run {folder.path} trained a model of your own (recorded as "
                          "'custom'); pass a fresh instance: load_model(RUN, model=MyNet())")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch nn.Module, got a {type(model).__name__}")
    return prepare_model(cfg.replace(compile=False), model, device)
