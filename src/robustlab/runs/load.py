"""Reopen a finished run: its config, its trained model and its data splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from robustlab.common.device import resolve_device
from robustlab.common.errors import ConfigError
from robustlab.data.in_memory import CUSTOM
from robustlab.runs.build import (
    RunData,
    build_model,
    build_model_from_kwargs,
    load_run_data,
    prepare_model,
)
from robustlab.runs.checkpoint import load_weights
from robustlab.runs.config import TrainConfig
from robustlab.runs.folder import WEIGHTS, RunFolder, RunFolderError
from robustlab.runs.saved import (
    check_summary_digest,
    open_run,
    read_run_config,
    recorded_model_kwargs,
)

__all__ = ["LoadedRun", "load_model", "load_run", "read_run_config"]


@dataclass
class LoadedRun:
    folder: RunFolder
    cfg: TrainConfig
    model: nn.Module
    data: RunData


def load_run(path: str | Path, *, device: str = "auto", data_dir: str | None = None) -> LoadedRun:
    """Model in eval mode with the run's final weights, plus its data (same splits as training)."""
    folder, cfg = open_run(path, data_dir=data_dir)
    if CUSTOM in (cfg.dataset, cfg.model):
        raise RunFolderError(f"run {folder.path} trained on a model or data passed from Python "
                             "(recorded as 'custom'), which cannot be rebuilt from the folder: "
                             "use robustlab.load_model(RUN[, model=MyNet()]) and evaluate on "
                             "your data with robustlab.evaluate(model, x, y, eps=...)")
    dev = resolve_device(device)
    data = load_run_data(cfg.replace(compile=False), dev)
    model = build_model(cfg.replace(compile=False), data.info, dev)
    check_summary_digest(folder, load_weights(folder.file(WEIGHTS), model))
    model.eval()
    return LoadedRun(folder, cfg, model, data)


def load_model(path: str | Path, *, model: nn.Module | None = None,
               device: str = "auto") -> nn.Module:
    """The run's trained model in eval mode, rebuilt from config.json alone (no dataset on
    disk), with the final weights checked against summary.json's digest. A run that trained a
    model of your own (`robustlab.train(net, ...)`, recorded as "custom") needs `model`: a
    fresh instance of the same class, into which the weights are loaded (keys and shapes must
    match). Runs written before config.json recorded `model_kwargs` fall back to `load_run`
    (which reads the dataset)."""
    folder, cfg = open_run(path)
    dev = resolve_device(device)
    if model is not None or cfg.model == CUSTOM:
        model = _own_model(folder, cfg, model, dev)
    else:
        kwargs = recorded_model_kwargs(folder)
        if kwargs is None:
            return load_run(path, device=device).model
        model = build_model_from_kwargs(cfg.replace(compile=False), kwargs, dev)
    check_summary_digest(folder, load_weights(folder.file(WEIGHTS), model))
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
