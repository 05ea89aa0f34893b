"""RobustBench's own architecture files, imported one by one from the installed `robustbench`
package (installed with --no-deps: its `__init__` needs torchvision, timm, ..., which robustlab
does not install; the architecture files need only torch). `None` when it is not installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn


def architecture_module(name: str) -> ModuleType | None:
    """robustbench/model_zoo/architectures/<name>.py, imported on its own; None without it."""
    spec = importlib.util.find_spec("robustbench")  # finds the folder; runs no __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(spec.submodule_search_locations[0]) / "model_zoo" / "architectures" / f"{name}.py"
    module_spec = importlib.util.spec_from_file_location(f"rb_reference_{name}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def require(name: str) -> ModuleType:
    module = architecture_module(name)
    if module is None:
        pytest.skip("robustbench is not installed (make installs it with --no-deps)")
    return module


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BatchNorm statistics (so every parameter and buffer matters)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
    return model.eval()


def key_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
