"""YAML reading with YAML 1.2 numbers.

PyYAML follows YAML 1.1, where `1e-3` (no dot) is a *string*; every user writing `lr: 1e-3` or
`--set lr=1e-3` means a float. This loader resolves the YAML 1.2 float forms (`1e-3`, `5E4`,
`.5`, `inf`, `nan`) as floats and otherwise behaves like `yaml.safe_load` (no Python objects).
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    pass


_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                            |[-+]?\.(?:inf|Inf|INF)
                            |\.(?:nan|NaN|NAN))$""", re.X)
# Keep the int resolver first: only strings that are not YAML ints become floats.
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12,
                              list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse YAML `text` (safe: plain data only) with YAML 1.2 floats. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
