"""Atomic file writes: every file robustlab writes appears whole or not at all.

A killed run can therefore never leave a half-written checkpoint or result file behind; the
previous version stays readable until the new one is complete.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any


class FileFormatError(ValueError):
    """A file robustlab reads that is not valid JSON / JSON lines (names the file and line)."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual file mode
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as err:  # a full disk while writing: name the file, not the temporary one
        if err.errno is None or err.filename not in (None, str(tmp_path)):
            raise
        raise OSError(err.errno, err.strerror, str(path)) from None
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def to_json(obj: Any) -> str:
    """Strict JSON (non-finite floats become null: bare NaN is not JSON)."""
    return json.dumps(_finite(obj), indent=2, sort_keys=True, default=_json_default,
                      allow_nan=False) + "\n"


def _json_line(obj: Any) -> str:
    return json.dumps(_finite(obj), sort_keys=True, default=_json_default, allow_nan=False)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    text = "".join(_json_line(r) + "\n" for r in rows)
    return atomic_write_text(path, text)


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; FileFormatError (naming the file) if it is not UTF-8 JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{path}: not valid JSON ({err}); the file is damaged") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """One JSON object per line; [] if the file does not exist. FileFormatError names the line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{path}: not UTF-8 text ({err}); the file is damaged") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise FileFormatError(f"{path}: line {number} is not valid JSON ({err}); the file "
                                  "is damaged") from None
    if not all(isinstance(r, dict) for r in rows):
        raise FileFormatError(f"{path}: expected one JSON object per line")
    return rows


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed `atomic_write` left in `folder` (the caller must hold
    the folder's lock, so no write of another process is in flight)."""
    folder = Path(folder)
    stale = sorted(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


# What robustlab writes into a folder it owns: {name pattern (fnmatch): None for a regular file,
# a nested layout for a sub-folder}. Used to prove a folder is robustlab's before replacing it.
Layout = Mapping[str, "Layout | None"]


def first_foreign_entry(folder: str | Path, layout: Layout) -> Path | None:
    """The first entry under `folder` (sorted, depth first) that `layout` does not name, as a
    path relative to `folder`; None when every entry is one robustlab writes there. A symbolic
    link, a file where a folder belongs (or the reverse) and a special file are foreign."""
    folder = Path(folder)
    with os.scandir(folder) as entries:
        ordered = sorted(entries, key=lambda e: e.name)
    for entry in ordered:
        known, sub = _match_layout(entry, layout)
        if not known:
            return Path(entry.name)
        inner = first_foreign_entry(entry.path, sub) if sub is not None else None
        if inner is not None:
            return Path(entry.name) / inner
    return None


def _match_layout(entry: os.DirEntry, layout: Layout) -> tuple[bool, Layout | None]:
    """(known?, the nested layout of a known folder, None for a known file)."""
    mode = entry.stat(follow_symlinks=False).st_mode
    for pattern, sub in layout.items():
        if not fnmatch.fnmatchcase(entry.name, pattern):
            continue
        if sub is None and stat.S_ISREG(mode):
            return True, None
        if sub is not None and stat.S_ISDIR(mode):
            return True, sub
    return False, None


def describe_entry(path: str | Path) -> str:
    """ "folder", "symbolic link", "file" or "special file", for one-line refusals."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "special file"


def open_no_follow(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """`os.open` that refuses to follow a symbolic link at `path` (OSError ELOOP) and returns
    only a descriptor of a regular file (OSError EINVAL otherwise): a planted link cannot make
    robustlab write to the file it points at."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def replace_refusal(path: str | Path, is_ours: Callable[[Path], bool]) -> str | None:
    """Why an `--overwrite` must not replace the single file `path`, or None when it may: it
    does not exist, or it is a regular file that `is_ours` recognises as one robustlab wrote
    (an unreadable or unparsable file is not). For one-line refusals."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    kind = describe_entry(path)
    if kind != "file":
        return f"{path} is a {kind}, not a file robustlab wrote; refusing to replace it"
    try:
        ours = is_ours(path)
    except (OSError, ValueError):
        ours = False
    return None if ours else (f"{path} is not a file robustlab wrote (its content is not "
                              "robustlab's); refusing to replace it: move it away or choose "
                              "another --out")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        value = obj.item()
        return None if isinstance(value, float) and not math.isfinite(value) else value
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
