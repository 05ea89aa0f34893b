"""Reopen a finished run: its config, its trained model and its data splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from robustlab.common.device import resolve_device
from robustlab.training.checkpoint import load_weights
from robustlab.training.config import TrainConfig
from robustlab.training.run_folder import WEIGHTS, RunFolder, RunFolderError
from robustlab.training.setup import RunData, build_model, load_run_data


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
    cfg = TrainConfig.from_dict(folder.read_config(), source=str(folder.file("config.json")))
    if data_dir is not None:
        cfg = cfg.replace(data_dir=data_dir)
    if not folder.file(WEIGHTS).is_file():
        raise RunFolderError(f"run {folder.path} has no {WEIGHTS}: it has not finished an epoch")
    dev = resolve_device(device)
    data = load_run_data(cfg.replace(compile=False), dev)
    model = build_model(cfg.replace(compile=False), data.info, dev)
    load_weights(folder.file(WEIGHTS), model)
    model.eval()
    return LoadedRun(folder, cfg, model, data)


