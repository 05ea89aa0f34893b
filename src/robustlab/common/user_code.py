"""Running the user's own Python files: plugin modules (`--plugin`) and model files
(`--model PATH.py:FACTORY`).

Both import from where the user works, like `python file.py` would: while a user file or
module is imported (and while a model file's factory runs), the file's own folder is first on
`sys.path` and the working directory is on it too, so `--plugin my_plugin` works from the
folder holding `my_plugin.py` without `PYTHONPATH=.`, and a file may import its siblings.
The entries are removed afterwards. Every failure of the user's code is described in one line
(`describe_failure`: the exception, its first line and where in the user's code it was
raised), never as a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

_MAX_MESSAGE = 300  # characters of an exception's first line kept in a one-line error
_OWN_CODE = Path(__file__).resolve().parents[1]  # robustlab's package folder


@contextlib.contextmanager
def user_import_path(*folders: Path) -> Iterator[None]:
    """Within the block, `folders` are first on `sys.path` (in the order given) and the
    working directory is on it (last, unless Python put it there already as '' or its path);
    the entries added are removed afterwards."""
    cwd = os.getcwd()
    added = [str(Path(f).resolve()) for f in folders]
    added = [e for i, e in enumerate(added) if e not in sys.path and e not in added[:i]]
    sys.path[:0] = added
    if "" not in sys.path and cwd not in sys.path:
        sys.path.append(cwd)
        added.append(cwd)
    importlib.invalidate_caches()  # a file written just now in a folder already searched
    try:
        yield
    finally:
        for entry in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def import_file(path: Path, module_name: str) -> ModuleType:
    """Import the Python file `path` as `module_name` (registered in `sys.modules`, where
    dataclasses and pickling look modules up), its folder on `sys.path` meanwhile. Raises
    `ImportError` if it is not a Python file, else whatever its code raises."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not an importable Python file (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with user_import_path(path.parent):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def describe_failure(err: BaseException, file: Path | None = None) -> str:
    """One line for an exception raised by the user's code: `"ValueError: boom (net.py:12)"`.

    The place is the SyntaxError's own file and line, else the deepest frame of the traceback in
    `file` (when given) or outside robustlab and Python's import machinery."""
    if isinstance(err, SyntaxError):
        text = err.msg or type(err).__name__
        where = f"{err.filename}:{err.lineno}" if err.filename else ""
    else:
        lines = str(err).strip().splitlines()
        text = lines[0] if lines else ""
        where = _user_frame(err, file)
    message = f"{type(err).__name__}: {text[:_MAX_MESSAGE]}" if text else type(err).__name__
    return f"{message} ({where})" if where else message


def _user_frame(err: BaseException, file: Path | None) -> str:
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if not f.filename.startswith("<")]
    if file is not None:
        target = Path(file).resolve()
        frames = [f for f in frames if Path(f.filename).resolve() == target]
    else:
        frames = [f for f in frames if _OWN_CODE not in Path(f.filename).resolve().parents]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
