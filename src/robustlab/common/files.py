"""Atomic file writes: every file robustlab writes appears whole or not at all.

A killed run can therefore never leave a half-written checkpoint or result file behind; the
previous version stays readable until the new one is complete.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
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
