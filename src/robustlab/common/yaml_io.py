"""YAML reading with YAML 1.2 numbers.

PyYAML follows YAML 1.1, where `1e-3` (no dot) is a *string*; every user writing `lr: 1e-3` or
`--set lr=1e-3` means a float. This loader resolves the YAML 1.2 float forms (`1e-3`, `5E4`,
`.5`, `inf`, `nan`) as floats and otherwise behaves like `yaml.safe_load` (no Python objects),
except that a key given twice in one mapping is an error naming the key and both lines (PyYAML
keeps the last silently; YAML 1.2 requires keys to be unique). A merge (`<<: *base`) may still
override the merged keys.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        _refuse_duplicate_keys(self, node)
        return super().construct_mapping(node, deep=deep)


def _refuse_duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """A ConstructorError (a YAMLError) for the first key `node` holds twice (merge keys and
    keys that are not hashable are left to PyYAML)."""
    first_line: dict[object, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key, line = loader.construct_object(key_node, deep=True), key_node.start_mark.line + 1
        try:
            first = first_line.get(key)
            first_line.setdefault(key, line)
        except TypeError:  # a list or mapping as a key: PyYAML's own error follows
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} on line {line} (first on line {first}); "
                "expected each key once")


_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
                            |[-+]?\.(?:inf|Inf|INF)
                            |\.(?:nan|NaN|NAN))$""", re.X)
# Keep the int resolver first: only strings that are not YAML ints become floats.
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12,
                              list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse YAML `text` (safe: plain data only) with YAML 1.2 floats. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader derives from SafeLoader
