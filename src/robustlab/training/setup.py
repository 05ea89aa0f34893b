"""Build what a training run needs from its config: its data and model (`runs/build.py`),
its training method and its optimizer. Everything here runs before the first training step, so
a bad value fails fast with a message naming the field."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.runs.build import RunData, build_model, load_run_data
from robustlab.runs.config import TrainConfig
from robustlab.training.methods import create_method
from robustlab.training.methods.base import TrainingMethod


@dataclass
class Components:
    data: RunData
    model: nn.Module
    method: TrainingMethod
    optimizer: torch.optim.Optimizer


def build_components(cfg: TrainConfig, device: torch.device) -> Components:
    try:
        method = create_method(cfg.method, **cfg.method_options)
    except TypeError as err:
        raise ConfigError(f"method_options: {cfg.method}: {err}") from None
    data = load_run_data(cfg, device)
    model = build_model(cfg, data.info, device)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return Components(data, model, method, optimizer)
