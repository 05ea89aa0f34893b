"""Training: one loop (`loop.py`), run folders, checkpoints, and the methods (`methods/`)."""

from robustlab.training.config import ConfigError, TrainConfig, load_config_file
from robustlab.training.loop import RunResult, default_run_dir, train
from robustlab.training.methods import create_method, list_methods
from robustlab.training.run_folder import RunFolder, RunFolderError

__all__ = ["ConfigError", "RunFolder", "RunFolderError", "RunResult", "TrainConfig",
           "create_method", "default_run_dir", "list_methods", "load_config_file", "train"]
