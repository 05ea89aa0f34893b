"""Fill the registries: import robustlab's own plugin packages, then any user plugins.

A registry is filled by the `@register` decorators of the modules that define its entries, so
a command that names a dataset, model, method, attack or defense by string first calls
`load_plugins()`. The packages are imported by name (like entry points), so calling it from any
layer adds no import dependency between layers.

User plugins: modules named by `--plugin MODULE` (or passed as `modules`), the
comma-separated modules of the environment variable `ROBUSTLAB_PLUGINS` (inherited by the worker
processes of `reproduce` and `torchrun`), and every module advertised in the
`robustlab.plugins` entry-point group of an installed package. A user plugin is a module name
(found on `sys.path` or in the working directory) or the path of a Python file
(`./my_plugin.py`, imported as the module `my_plugin`); while it is imported its folder and the
working directory are on `sys.path`, so it may import its siblings (`common/user_code.py`).
Any failure -- not found, a SyntaxError, an exception in its code -- is one `PluginError` line
naming the module or file and the exception.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from robustlab.common.user_code import describe_failure, import_file, user_import_path

BUILTIN_PLUGINS = (
    "robustlab.data",
    "robustlab.models",
    "robustlab.attacks",
    "robustlab.defenses",
    "robustlab.training.methods",
)
ENTRY_POINT_GROUP = "robustlab.plugins"
ENV_VAR = "ROBUSTLAB_PLUGINS"


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of the plugin package `package` (its `__path__`), in name order,
    so a new component file registers itself: adding a dataset, model, attack, defense or
    method is its file (and its test), with no list to edit. Modules named `_*` are skipped."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


class PluginError(ImportError):
    """A user plugin module that cannot be imported; the message names it."""


def load_plugins(modules: Iterable[str] = ()) -> None:
    """Import the built-in plugin packages, the `robustlab.plugins` entry points, the modules
    of `ROBUSTLAB_PLUGINS` and `modules` (idempotent: Python imports each module once)."""
    _load_installed(os.environ.get(ENV_VAR, ""))
    for name in modules:
        _import_user(name, "--plugin")


@functools.cache
def _load_installed(env_value: str) -> None:
    """Built-ins, entry points and `ROBUSTLAB_PLUGINS`, once per process and value of the
    variable (scanning the installed packages' metadata takes milliseconds, and every
    `TrainConfig.validate` asks). A failed import is not cached: it raises again."""
    for name in BUILTIN_PLUGINS:
        importlib.import_module(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _import_user(ep.value.split(":")[0], f"entry point {ep.name!r} of {ENTRY_POINT_GROUP}")
    for name in filter(None, (m.strip() for m in env_value.split(","))):
        _import_user(name, ENV_VAR)


def _import_user(name: str, source: str) -> None:
    """Import the user plugin `name`: a module name (found on `sys.path` or in the working
    directory) or the path of a Python file (`./my_plugin.py`, `plugins/extra.py`). Any
    failure is a `PluginError`, one line naming the module and the exception."""
    if _is_path(name):
        _import_user_file(Path(name).expanduser(), source)
        return
    try:
        with user_import_path():
            importlib.import_module(name)
    except ImportError as err:
        raise PluginError(f"{source}: cannot import plugin module {name!r}: {err}") from None
    except Exception as err:  # the plugin's own code failed: say which module and how
        raise PluginError(f"{source}: plugin module {name!r} failed while being imported: "
                          f"{describe_failure(err)}") from err


def _is_path(name: str) -> bool:
    return name.endswith(".py") or "/" in name or os.sep in name


def _import_user_file(path: Path, source: str) -> None:
    """Import the plugin file `path` as the module named by its stem (so `--plugin
    my_plugin` and `--plugin ./my_plugin.py` are the same module, imported once)."""
    if not path.is_file():
        raise PluginError(f"{source}: plugin file {path} not found (looked in {Path.cwd()}); "
                          "expected a Python file or a module name")
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
        if origin and Path(origin).resolve() == path.resolve():
            return
        raise PluginError(f"{source}: cannot import plugin file {path}: a different module "
                          f"named {name!r} is already imported (from {origin or 'built-in'}); "
                          "rename the file")
    try:
        import_file(path, name)
    except ImportError as err:
        raise PluginError(f"{source}: cannot import plugin file {path}: {err}") from None
    except Exception as err:
        raise PluginError(f"{source}: plugin file {path} failed while being imported: "
                          f"{describe_failure(err, path)}") from err
