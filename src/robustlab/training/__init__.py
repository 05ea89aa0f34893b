"""Training: one loop (`loop.py`), run folders, checkpoints, and the methods (`methods/`).

The objectives as plain functions for your own loop (`methods/losses.py`): `pgd_at_loss`,
`trades_loss`, `mart_loss`, `hybrid_loss` (the paper's loss) and `HybridLoss` (with its eps
ramp and adaptive alpha state)."""

from robustlab.common.errors import ConfigError
from robustlab.runs.config import TrainConfig, load_config_file
from robustlab.runs.folder import RunFolder, RunFolderError
from robustlab.training.loop import RunResult, default_run_dir, train
from robustlab.training.methods import create_method, list_methods
from robustlab.training.methods.losses import (
    HybridLoss,
    hybrid_loss,
    mart_loss,
    pgd_at_loss,
    trades_loss,
)

__all__ = ["ConfigError", "HybridLoss", "RunFolder", "RunFolderError", "RunResult",
           "TrainConfig", "create_method", "default_run_dir", "list_methods", "load_config_file",
           "hybrid_loss", "mart_loss", "pgd_at_loss", "trades_loss", "train"]
