"""Build what a training run needs from its config: its data and model (`runs/build.py`),
its training method and its optimizer. Everything here runs before the first training step, so
a bad value fails fast with a message naming the field."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustlab.common.checks import check_l1_budget, check_l2_budget
from robustlab.common.errors import ConfigError
from robustlab.data import DatasetSplits
from robustlab.data.in_memory import CUSTOM
from robustlab.runs.build import RunData, build_model, load_run_data, prepare_model
from robustlab.runs.config import TrainConfig
from robustlab.training.methods import create_method
from robustlab.training.methods.base import TrainingMethod


@dataclass
class Components:
    data: RunData
    model: nn.Module
    method: TrainingMethod
    optimizer: torch.optim.Optimizer


def build_components(cfg: TrainConfig, device: torch.device, *, model: nn.Module | None = None,
                     splits: DatasetSplits | None = None) -> Components:
    """Data, model, method and optimizer of the run. `model` / `splits` are a model and data
    passed from Python (`robustlab.train`); `cfg.model` / `cfg.dataset` then read "custom"."""
    _check_injected(cfg, model, splits)
    method = create_method(cfg.method, **cfg.method_options)  # checked by its OPTIONS
    data = load_run_data(cfg, device, splits)
    if cfg.norm in ("l1", "l2") and cfg.eps is not None:  # its range needs the images' size
        check = check_l1_budget if cfg.norm == "l1" else check_l2_budget
        check("eps", cfg.eps, data.train.x[0].numel(), where=cfg.dataset, error=ConfigError)
    model = (build_model(cfg, data.info, device) if model is None
             else prepare_model(cfg, model, device))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("model: it has no trainable parameters")
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return Components(data, model, method, optimizer)


def _check_injected(cfg: TrainConfig, model: nn.Module | None,
                    splits: DatasetSplits | None) -> None:
    for fname, given, what in (("model", model, "an nn.Module"), ("dataset", splits, "data")):
        named_custom = getattr(cfg, fname) == CUSTOM
        if named_custom and given is None:
            raise ConfigError(f"{fname}: 'custom' means {what} passed to robustlab.train(); "
                              f"name a registered {fname} (robustlab list) instead")
        if given is not None and not named_custom:
            raise ConfigError(f"{fname}: {what} was passed from Python, so the config must "
                              f"name it 'custom', not {getattr(cfg, fname)!r}")
    if model is not None and not isinstance(model, nn.Module):
        raise ConfigError(f"model: expected a torch nn.Module, got a {type(model).__name__}")
