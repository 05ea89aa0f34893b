"""A run is a folder. This module owns its layout and the rules that keep results safe.

    RUN/config.json             the config as run, plus versions, git commit, command
    RUN/metrics.jsonl           one JSON line per finished epoch
    RUN/checkpoint.safetensors  resumable training state (weights, optimizer, method, epoch)
    RUN/model.safetensors       the weights (+ JSON metadata), written each epoch and at the end
    RUN/summary.json            written last: its presence marks a complete run

Rules: every write is atomic; an existing run folder is never overwritten unless `overwrite`;
`resume` continues from the last finished epoch and refuses a different config.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustlab.common.files import atomic_write_json, atomic_write_jsonl, read_json, read_jsonl

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.safetensors"
WEIGHTS = "model.safetensors"
SUMMARY = "summary.json"

# Fields that may differ between an interrupted run and its resumption.
_RESUME_FREE_FIELDS = {"progress", "out_dir", "threads", "data_dir", "download"}


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked (exists, incomplete, mismatched config)."""


@dataclass
class RunFolder:
    path: Path
    replace_existing: bool = False

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def is_complete(self) -> bool:
        return self.file(SUMMARY).is_file()

    def read_config(self) -> dict[str, Any]:
        path = self.file(CONFIG)
        if not path.is_file():
            raise RunFolderError(f"{self.path} is not a robustlab run folder (no {CONFIG})")
        return read_json(path)["train"]

    def read_metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.file(METRICS))

    def read_summary(self) -> dict[str, Any]:
        if not self.is_complete:
            raise RunFolderError(f"run {self.path} is not complete (no {SUMMARY})")
        return read_json(self.file(SUMMARY))

    def write_config(self, config: dict[str, Any]) -> None:
        if self.replace_existing and self.path.exists():
            shutil.rmtree(self.path)
            self.replace_existing = False
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.file(CONFIG), {"train": config, "environment": environment_info()})

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_jsonl(self.file(METRICS), rows)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.file(SUMMARY), summary)


def prepare_run_folder(path: str | Path, config: dict[str, Any], *, resume: bool,
                       overwrite: bool) -> tuple[RunFolder, bool]:
    """Check the run folder can be used as asked; return (folder, resuming?).

    Writes nothing: the caller writes the config once the run's components are built."""
    if resume and overwrite:
        raise RunFolderError("choose one of resume and overwrite, not both")
    run = RunFolder(Path(path))
    exists = run.path.exists() and any(run.path.iterdir())
    if exists and overwrite:
        run.replace_existing = True  # deleted only when the new run writes its config
        return run, False
    if exists and not resume:
        state = "a complete run" if run.is_complete else "an unfinished run"
        raise RunFolderError(f"run folder {run.path} already holds {state}; pass --resume to "
                             "continue it or --overwrite to replace it (results are never "
                             "overwritten silently)")
    if exists:
        # a field added to TrainConfig after the run was made counts as its default there
        old = {**_config_defaults(), **run.read_config()}
        diff = sorted(k for k in set(old) | set(config)
                      if k not in _RESUME_FREE_FIELDS and old.get(k) != config.get(k))
        if diff:
            details = "; ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in diff)
            raise RunFolderError(f"cannot resume {run.path} with a different config ({details})")
        return run, True
    return run, False


def _config_defaults() -> dict[str, Any]:
    from robustlab.training.config import TrainConfig

    return TrainConfig().to_dict()


def environment_info() -> dict[str, Any]:
    import numpy
    import torch

    import robustlab

    return {
        "robustlab": robustlab.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
