"""A run is a folder. This module owns its layout and the rules that keep results safe.

    RUN/config.json             the config as run, plus versions, git commit, command
    RUN/metrics.jsonl           one JSON line per finished epoch
    RUN/checkpoint.safetensors  resumable training state (weights, optimizer, method, epoch)
    RUN/model.safetensors       the weights (+ JSON metadata, SHA-256 digest), each epoch and at
                                the end
    RUN/model-averaged.safetensors  the averaged weights (EMA / SWA runs only), written like it
    RUN/summary.json            written last: its presence marks a complete run
    RUN/eval*.json, RUN/eval/*.json, RUN/certify-sigma*.json|.png   evaluations written later
    RUN/.NAME.XXXX.tmp          a write in flight (or killed): common/files.atomic_write

Rules (docs/reliability.md says how each is tested):
- every write is atomic (common/files.py); stale temporary files of a killed write are removed
  when the folder is next claimed;
- one writer at a time: `claim_run_folder` holds an advisory lock (`.RUN.lock` beside the
  folder, named after its resolved path, never opened through a symbolic link) for the whole
  run, a second writer is refused;
- an existing run folder is never overwritten unless `overwrite`, and then only if it *is* a run
  folder (`check_owned_folder`: every entry a name of `RUN_LAYOUT`, config.json a run's); the
  new run is built beside it (`.RUN.staging`) and swapped in by rename once complete,
  so a kill leaves the old run intact;
- `resume` continues from the last finished epoch and refuses a different config.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustlab.common.files import (
    FileFormatError,
    Layout,
    atomic_write_json,
    atomic_write_jsonl,
    describe_entry,
    first_foreign_entry,
    open_no_follow,
    read_json,
    read_jsonl,
    remove_stale_temp_files,
)
from robustlab.common.renamed import upgrade_train_fields
from robustlab.common.result_checks import check_summary_values
from robustlab.common.vocabulary import AVERAGED_WEIGHTS_FILE as AVERAGED_WEIGHTS
from robustlab.common.vocabulary import CHECKPOINT_FILE as CHECKPOINT
from robustlab.common.vocabulary import METRICS_FILE as METRICS
from robustlab.common.vocabulary import RUN_CONFIG_FILE as CONFIG
from robustlab.common.vocabulary import SUMMARY_FILE as SUMMARY
from robustlab.common.vocabulary import WEIGHTS_FILE as WEIGHTS

# Every name robustlab writes into a run folder (train, evaluate, certify, reproduce's eval/,
# atomic_write's temporary files): `--overwrite` deletes a folder only if it holds nothing else.
TEMP_FILES = ".*.tmp"
RUN_LAYOUT: Layout = {
    CONFIG: None, METRICS: None, CHECKPOINT: None, WEIGHTS: None, AVERAGED_WEIGHTS: None,
    SUMMARY: None,
    "eval*.json": None, "eval": {"*.json": None, TEMP_FILES: None},
    "certify-sigma*.json": None, "certify-sigma*.png": None, TEMP_FILES: None,
}

# Fields that may differ between an interrupted run and its resumption.
_RESUME_FREE_FIELDS = {"progress", "out_dir", "threads", "data_dir", "download"}


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked (exists, incomplete, mismatched config, in use,
    damaged)."""


@dataclass
class RunFolder:
    """The files of one run. `replaces`: set while this is a staging folder that takes the place
    of an existing run when `finish` is called."""

    path: Path
    replaces: Path | None = None

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def is_complete(self) -> bool:
        return self.file(SUMMARY).is_file()

    def read_config(self) -> dict[str, Any]:
        """The `train` table of config.json; RunFolderError if missing or damaged."""
        return self._config_file()["train"]

    def config_digest(self) -> str:
        """SHA-256 of the `train` table without the resume-free fields: what binds a checkpoint
        to the run that wrote it (a copied checkpoint comes with another run's digest)."""
        table = {k: v for k, v in self.read_config().items() if k not in _RESUME_FREE_FIELDS}
        text = json.dumps(table, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode()).hexdigest()

    def _config_file(self) -> dict[str, Any]:
        """config.json as a whole, with its `train` object checked."""
        path = self.file(CONFIG)
        if not path.is_file():
            raise RunFolderError(f"{self.path} is not a robustlab run folder (no {CONFIG})")
        data = _read_json_file(path)
        if not isinstance(data, dict) or not isinstance(data.get("train"), dict):
            raise RunFolderError(f"{path}: expected an object with a 'train' object, as "
                                 "robustlab train writes it")
        return data

    def read_metrics(self) -> list[dict[str, Any]]:
        try:
            return read_jsonl(self.file(METRICS))
        except FileFormatError as err:
            raise RunFolderError(str(err)) from None

    def read_summary(self) -> dict[str, Any]:
        if not self.is_complete:
            raise RunFolderError(f"run {self.path} is not complete (no {SUMMARY}): it was "
                                 "interrupted or is still training; `robustlab train --resume` "
                                 "finishes it")
        data = _read_json_file(self.file(SUMMARY))
        if not isinstance(data, dict):
            raise RunFolderError(f"{self.file(SUMMARY)}: expected a JSON object")
        return dict(check_summary_values(data, str(self.file(SUMMARY)), error=RunFolderError))

    def write_config(self, config: dict[str, Any],
                     model_kwargs: dict[str, Any] | None = None) -> None:
        """config.json: the `train` table, the environment and (when given) the keyword
        arguments the model was built with, so `load_model` needs no dataset on disk."""
        self.path.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {"train": config, "environment": environment_info()}
        if model_kwargs is not None:
            data["model_kwargs"] = model_kwargs
        atomic_write_json(self.file(CONFIG), data)

    def read_model_kwargs(self) -> dict[str, Any] | None:
        """The `model_kwargs` object of config.json (None for runs written before it was)."""
        kwargs = self._config_file().get("model_kwargs")  # one read, the same checks
        if kwargs is not None and not isinstance(kwargs, dict):
            raise RunFolderError(f"{self.file(CONFIG)}: model_kwargs: expected an object, got "
                                 f"{type(kwargs).__name__}")
        return kwargs

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_jsonl(self.file(METRICS), rows)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.file(SUMMARY), summary)

    def finish(self) -> None:
        """After the summary: drop the training state; a staging folder takes its place."""
        self.file(CHECKPOINT).unlink(missing_ok=True)
        if self.replaces is not None:
            _swap_in(self.path, self.replaces)
            self.path, self.replaces = self.replaces, None


def _read_json_file(path: Path) -> Any:
    try:
        return read_json(path)
    except (FileFormatError, OSError) as err:
        raise RunFolderError(str(err)) from None


def staging_path(target: Path) -> Path:
    return target.parent / f".{target.name}.staging"


def _trash_path(target: Path) -> Path:
    return target.parent / f".{target.name}.replaced"


def _swap_target(target: Path) -> Path:
    """The folder an --overwrite swap renames: the one a symlinked --out points at (renaming
    the link would leave the old run in place and put the new one where the link was)."""
    return target.resolve() if target.is_symlink() else target


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


def _swap_in(staging: Path, target: Path) -> None:
    """Put the complete run `staging` at `target`, the old run aside then deleted. A kill
    between the two renames leaves no `target`; `_recover_swap` completes the swap."""
    trash = _trash_path(target)
    _refuse_link(trash)
    if trash.exists():
        shutil.rmtree(trash)
    if target.exists():
        try:  # again: a user may have put files into the old run while the new one trained
            _check_replaceable(target)
        except RunFolderError as err:
            raise RunFolderError(f"{err}; the new run is kept whole in {staging}") from None
        os.rename(target, trash)
    os.rename(staging, target)
    shutil.rmtree(trash, ignore_errors=True)


def _recover_swap(target: Path) -> None:
    target = _swap_target(target)
    staging, trash = staging_path(target), _trash_path(target)
    if not target.exists() and not staging.is_symlink() and (staging / SUMMARY).is_file():
        os.rename(staging, target)
    if target.exists() and trash.exists():
        shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def hold_lock(target: Path) -> Iterator[None]:
    """Advisory lock on the run folder `target` for this process (released on exit or kill).
    Named after the resolved path, so every spelling of one folder (a symlinked --out, `..`)
    shares one lock; opened without following a symbolic link (a link planted at the lock path
    is refused, never written through)."""
    lock = lock_path(Path(target).resolve())
    fd = _open_lock(lock)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise RunFolderError(f"run folder {target} is in use by another robustlab process "
                                 f"(pid {holder}, lock {lock}); wait for it to finish or "
                                 "choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _open_lock(lock: Path) -> int:
    try:
        return open_no_follow(lock, os.O_RDWR | os.O_CREAT)
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.EINVAL):
            raise
        raise RunFolderError(f"lock file {lock} is a {describe_entry(lock)}, not a file "
                             "robustlab made; refusing to write through it (remove it if it "
                             "is not yours)") from None


@contextlib.contextmanager
def claim_run_folder(path: str | Path, config: dict[str, Any], *, resume: bool, overwrite: bool,
                     lock: bool = True, defaults: dict[str, Any] | None = None
                     ) -> Iterator[tuple[RunFolder, bool]]:
    """Lock the run folder, check it can be used as asked, yield (folder, resuming?).
    `defaults`: the config's field defaults (a field the recorded config lacks, because it was
    added after the run was made, counts as its default when resuming).

    Writes nothing but the lock file and cleanup of a killed run's leftovers (temporary files,
    a half-done swap); the caller writes the config once the run's components are built.
    `lock=False` (other ranks of a distributed run) only checks."""
    target = Path(path)
    _check_target(target)
    with hold_lock(target) if lock else contextlib.nullcontext():
        if lock:
            _recover_swap(target)
            if target.is_dir() and first_foreign_entry(target, RUN_LAYOUT) is None:
                remove_stale_temp_files(target)  # in a run folder only: never a user's .x.tmp
        yield check_run_folder(target, config, resume=resume, overwrite=overwrite, clean=lock,
                               defaults=defaults)


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise RunFolderError(f"--out {target} is a file, not a folder; choose a folder path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunFolderError(f"--out {target}: cannot create its parent folder "
                             f"({err.strerror})") from None
    if not os.access(target.parent, os.W_OK | os.X_OK) or (
            target.exists() and not os.access(target, os.W_OK | os.X_OK)):
        raise RunFolderError(f"--out {target}: not writable by this user; choose another "
                             "folder")


def check_run_folder(target: Path, config: dict[str, Any], *, resume: bool, overwrite: bool,
                     clean: bool = False, defaults: dict[str, Any] | None = None
                     ) -> tuple[RunFolder, bool]:
    """The checks of `claim_run_folder`, without the lock. `clean`: delete a stale staging
    folder when overwriting (only the lock holder may)."""
    if resume and overwrite:
        raise RunFolderError("choose one of resume and overwrite, not both")
    run = RunFolder(target)
    exists = target.exists() and any(target.iterdir())
    if exists and overwrite:
        _check_replaceable(target)
        real = _swap_target(target)
        staging = staging_path(real)
        _refuse_link(staging)
        if clean and staging.exists():
            shutil.rmtree(staging)  # an earlier --overwrite that was killed
        return RunFolder(staging, replaces=real), False
    if exists and not resume:
        if not (target / CONFIG).is_file():
            raise RunFolderError(f"--out {target} already holds files that are not a robustlab "
                                 "run; choose an empty or new folder")
        state = "a complete run" if run.is_complete else "an unfinished run"
        raise RunFolderError(f"run folder {target} already holds {state}; pass --resume to "
                             "continue it or --overwrite to replace it (results are never "
                             "overwritten silently)")
    if exists and (target / CONFIG).is_file():
        _check_same_config(run, config, defaults or {})
        return run, True
    if exists:  # files, but no config: not a run this code could have made
        raise RunFolderError(f"cannot resume {target}: it is not a robustlab run folder "
                             f"(no {CONFIG}); choose an empty or new folder")
    return run, False


def check_owned_folder(path: Path, layout: Layout, kind: str,
                       check_records: Callable[[Path], object] | None = None) -> None:
    """Before `--overwrite` deletes `path`: it must be a `kind` robustlab wrote, every entry a
    name of `layout` and (`check_records`) its records parsing. RunFolderError otherwise, one
    line naming the first foreign entry."""
    foreign = first_foreign_entry(path, layout)
    if foreign is not None:
        raise RunFolderError(f"--overwrite: {path} is not a robustlab {kind}: it holds "
                             f"{describe_entry(path / foreign)}s ({foreign}), which robustlab "
                             "never writes there; refusing to delete it (move them away or "
                             "choose another --out)")
    if check_records is not None:
        check_records(path)


def _refuse_link(path: Path) -> None:
    """robustlab never makes a symbolic link; one at a name it writes (staging, replaced) was
    planted, and following it would write or delete elsewhere."""
    if path.is_symlink():
        raise RunFolderError(f"{path} is a symbolic link, not a folder robustlab made; "
                             "refusing to write through it (remove it if it is not yours)")


def _check_replaceable(target: Path) -> None:
    """--overwrite replaces only a robustlab run folder: nothing but the files robustlab writes
    into one (RUN_LAYOUT), and a config.json as train writes it."""
    check_owned_folder(target, RUN_LAYOUT, "run folder",
                       lambda path: RunFolder(path).read_config())


def _check_same_config(run: RunFolder, config: dict[str, Any], defaults: dict[str, Any]
                       ) -> None:
    # a run written before an option's rename reads under the new name (common/renamed.py)
    old = {**defaults, **upgrade_train_fields(run.read_config(), source=str(run.file(CONFIG)))}
    diff = sorted(k for k in set(old) | set(config)
                  if k not in _RESUME_FREE_FIELDS and old.get(k) != config.get(k))
    if diff:
        details = "; ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in diff)
        raise RunFolderError(f"cannot resume {run.path} with a different config ({details})")


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


__all__ = ["AVERAGED_WEIGHTS", "CHECKPOINT", "CONFIG", "METRICS", "RUN_LAYOUT", "SUMMARY",
           "TEMP_FILES", "WEIGHTS", "RunFolder", "RunFolderError", "check_owned_folder",
           "check_run_folder", "claim_run_folder", "hold_lock"]
