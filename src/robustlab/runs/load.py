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
from robustlab.runs.checkpoint import DIGEST_KEY, WeightsError, load_weights
from robustlab.runs.config import TrainConfig
from robustlab.runs.folder import CONFIG, WEIGHTS, RunFolder, RunFolderError


@dataclass
class LoadedRun:
    folder: RunFolder
    cfg: TrainConfig
    model: nn.Module
    data: RunData


def load_run(path: str | Path, *, device: str = "auto", data_dir: str | None = None) -> LoadedRun:
    """Model in eval mode with the run's final weights, plus its data (same splits as training)."""
    folder = RunFolder(Path(path))
    if not folder.path.is_dir():
        raise RunFolderError(f"run folder {folder.path} does not exist")
    cfg = read_run_config(folder, data_dir=data_dir)
    if not folder.file(WEIGHTS).is_file():
        raise RunFolderError(f"run {folder.path} has no {WEIGHTS}: it has not finished an epoch")
    if CUSTOM in (cfg.dataset, cfg.model):
        raise RunFolderError(f"run {folder.path} trained on a model or data passed from Python "
                             "(recorded as 'custom'), which cannot be rebuilt from the folder: "
                             "use robustlab.load_model(RUN[, model=MyNet()]) and evaluate on "
                             "your data with robustlab.evaluate(model, x, y, eps=...)")
    dev = resolve_device(device)
    data = load_run_data(cfg.replace(compile=False), dev)
    model = build_model(cfg.replace(compile=False), data.info, dev)
    metadata = load_weights(folder.file(WEIGHTS), model)
    _check_summary_digest(folder, metadata)
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
    folder = RunFolder(Path(path))
    if not folder.path.is_dir():
        raise RunFolderError(f"run folder {folder.path} does not exist")
    cfg = read_run_config(folder)
    if not folder.file(WEIGHTS).is_file():
        raise RunFolderError(f"run {folder.path} has no {WEIGHTS}: it has not finished an epoch")
    dev = resolve_device(device)
    if model is not None or cfg.model == CUSTOM:
        model = _own_model(folder, cfg, model, dev)
    else:
        kwargs = folder.read_model_kwargs()
        if kwargs is None:
            return load_run(path, device=device).model
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        model = build_model_from_kwargs(cfg.replace(compile=False), kwargs, dev)
    _check_summary_digest(folder, load_weights(folder.file(WEIGHTS), model))
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


def _check_summary_digest(folder: RunFolder, metadata: dict) -> None:
    """The weights must be the ones the run finished with (summary.json records their digest):
    weights copied in from another run, or an older epoch's, are refused."""
    if not folder.is_complete:
        return
    recorded = folder.read_summary().get(DIGEST_KEY)
    if recorded is not None and recorded != metadata.get(DIGEST_KEY):
        raise WeightsError(f"weights file {folder.file(WEIGHTS)} does not match the digest in "
                           f"{folder.file('summary.json')}: these are not the weights this run "
                           "finished with")


def read_run_config(folder: RunFolder, *, data_dir: str | None = None) -> TrainConfig:
    """The run's `TrainConfig` from its config.json, validated as `robustlab train` validates
    it (with `data_dir` replaced when given). The recorded `device` and `threads` are not
    checked: a run trained on a GPU or a bigger machine may be evaluated on a smaller one. Any
    problem is a
    `RunFolderError` naming config.json and the field."""
    path = folder.file(CONFIG)
    try:
        raw = folder.read_config()
    except (KeyError, TypeError):  # a config.json without a `train` object
        raw = None
    if not isinstance(raw, dict):
        raise RunFolderError(f"{path}: expected a JSON object with a 'train' object (as "
                             "robustlab train writes it), found something else")
    try:
        cfg = TrainConfig.from_dict(raw, source=str(path))
        if data_dir is not None:
            cfg = cfg.replace(data_dir=data_dir)
        cfg.replace(device="auto", threads=None).validate()  # this machine's, not the run's
    except (ConfigError, TypeError) as err:
        detail = str(err).removeprefix(f"{path}: ")
        raise RunFolderError(f"{path}: invalid recorded config: {detail}") from None
    return cfg
