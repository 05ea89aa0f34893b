"""Training: one loop (`loop.py`), run folders, checkpoints, and the methods (`methods/`)."""

from robustlab.common.errors import ConfigError
from robustlab.runs.config import TrainConfig, load_config_file
from robustlab.runs.folder import RunFolder, RunFolderError
from robustlab.training.loop import RunResult, default_run_dir, train
from robustlab.training.methods import create_method, list_methods

__all__ = ["ConfigError", "RunFolder", "RunFolderError", "RunResult", "TrainConfig",
           "create_method", "default_run_dir", "list_methods", "load_config_file", "train"]
