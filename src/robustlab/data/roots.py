"""Where dataset files are looked for, in a fixed order, and the error when they are not found.

Order (the first folder that holds a complete copy wins):

1. the explicit `root=` argument (CLI `--data-dir`), and then nothing else;
2. otherwise the environment variable `ROBUSTLAB_DATA`;
3. known system locations (e.g. Debian's `/usr/share/datasets/fashion-mnist`);
4. the user cache `~/.cache/robustlab` (`$XDG_CACHE_HOME/robustlab` when that is set).

Inside each root both `ROOT/<dataset-subdir>/<files>` and `ROOT/<files>` are accepted. Nothing
is downloaded unless the caller passes `download=True`; downloads go to `download_dir()`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from robustlab.data.errors import DataError

ENV_VAR = "ROBUSTLAB_DATA"

# Folders that distributions install datasets into. Searched after ROBUSTLAB_DATA, before the cache.
SYSTEM_LOCATIONS: dict[str, tuple[str, ...]] = {
    "mnist": ("/usr/share/datasets/mnist",),
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),
    "cifar10": ("/usr/share/datasets/cifar10", "/usr/share/datasets/cifar-10"),
}


def cache_dir() -> Path:
    """The per-user cache root: `$XDG_CACHE_HOME/robustlab` or `~/.cache/robustlab`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "robustlab"


def candidate_roots(name: str, root: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    """(label, folder) pairs to search for dataset `name`, in priority order."""
    if root is not None:
        return [("root= / --data-dir", Path(root).expanduser())]
    out: list[tuple[str, Path]] = []
    env = os.environ.get(ENV_VAR)
    if env:
        out.append((f"${ENV_VAR}", Path(env).expanduser()))
    out.extend(("system location", Path(p)) for p in SYSTEM_LOCATIONS.get(name, ()))
    out.append(("user cache", cache_dir()))
    return out


def locate(name: str, root: str | os.PathLike[str] | None, *, subdirs: Sequence[str],
           is_complete: Callable[[Path], bool]) -> tuple[Path | None, list[str]]:
    """Find the first folder holding a complete copy of dataset `name`.

    Each candidate root R is tried as R/<subdir> for every subdir, then as R itself.
    Returns (folder or None, human-readable list of every folder searched).
    """
    searched: list[str] = []
    if root is None and not os.environ.get(ENV_VAR):
        searched.append(f"${ENV_VAR}  (not set)")
    for label, base in candidate_roots(name, root):
        for folder in [base / s for s in subdirs] + [base]:
            searched.append(f"{folder}  ({label})")
            if folder.is_dir() and is_complete(folder):
                return folder, searched
    return None, searched


def download_dir(name: str, root: str | os.PathLike[str] | None) -> Path:
    """Where `download=True` writes dataset `name`: root=, else $ROBUSTLAB_DATA, else the cache."""
    if root is not None:
        base = Path(root).expanduser()
    elif os.environ.get(ENV_VAR):
        base = Path(os.environ[ENV_VAR]).expanduser()
    else:
        base = cache_dir()
    return base / name


def not_found(name: str, what: str, searched: Sequence[str], *,
              downloadable: bool = True) -> DataError:
    """The error raised when no searched folder holds the dataset: lists places and the fix."""
    places = "\n".join(f"  - {s}" for s in searched)
    fixes = [f"  - set {ENV_VAR}=/path/to/data (holding {name}/ or the files directly)",
             "  - or pass root='/path' (CLI: --data-dir /path)"]
    if downloadable:
        fixes.append("  - or pass download=True (CLI: --download) to fetch the official files "
                      "(checksum-verified)")
    return DataError(f"dataset {name!r} not found: expected {what}.\nSearched, in order:\n"
                     f"{places}\nFix:\n" + "\n".join(fixes))
