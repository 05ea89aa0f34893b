"""Fill the registries: import robustlab's own plugin packages, then any user plugins.

A registry is filled by the `@register` decorators of the modules that define its entries, so
a command that names a dataset, model, method, attack or defense by string first calls
`load_plugins()`. The packages are imported by name (like entry points), so calling it from any
layer adds no import dependency between layers.

User plugins: modules named by `--plugin MODULE` (or passed as `modules`), the
comma-separated modules of the environment variable `ROBUSTLAB_PLUGINS` (inherited by the worker
processes of `reproduce` and `torchrun`), and every module advertised in the
`robustlab.plugins` entry-point group of an installed package.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Iterable
from importlib.metadata import entry_points

BUILTIN_PLUGINS = (
    "robustlab.data",
    "robustlab.models",
    "robustlab.attacks",
    "robustlab.defenses",
    "robustlab.training.methods",
)
ENTRY_POINT_GROUP = "robustlab.plugins"
ENV_VAR = "ROBUSTLAB_PLUGINS"


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
    try:
        importlib.import_module(name)
    except ImportError as err:
        raise PluginError(f"{source}: cannot import plugin module {name!r}: {err}") from None
