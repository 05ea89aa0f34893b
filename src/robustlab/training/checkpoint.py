"""Checkpoints as safetensors + JSON (never pickle).

`flatten_state` turns any nested state (optimizer, scheduler, method state) into a flat dict of
tensors plus a JSON skeleton that records where each tensor goes, so the whole training state fits
in one `.safetensors` file whose metadata holds the JSON. One file means one atomic rename: a
kill can never leave weights and optimizer state from different epochs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from robustlab.common.files import atomic_write

_TENSOR = "__tensor__"
_DICT = "__dict__"
_TUPLE = "__tuple__"


def flatten_state(obj: Any, prefix: str = "s") -> tuple[dict[str, torch.Tensor], Any]:
    """Split nested `obj` into (tensors by key, JSON-able skeleton referencing those keys)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(node, dict):
            return {_DICT: [[k, walk(v, f"{path}.{k}")] for k, v in node.items()]}
        if isinstance(node, tuple):
            return {_TUPLE: [walk(v, f"{path}.{i}") for i, v in enumerate(node)]}
        if isinstance(node, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(node)]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"cannot checkpoint value of type {type(node).__name__} at {path}")

    return tensors, walk(obj, prefix)


def unflatten_state(tensors: dict[str, torch.Tensor], skeleton: Any) -> Any:
    """Inverse of `flatten_state`."""
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if _DICT in skeleton:
            return {k: unflatten_state(tensors, v) for k, v in skeleton[_DICT]}
        if _TUPLE in skeleton:
            return tuple(unflatten_state(tensors, v) for v in skeleton[_TUPLE])
    if isinstance(skeleton, list):
        return [unflatten_state(tensors, v) for v in skeleton]
    return skeleton


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write nested `state` (tensors and plain values) to one safetensors file."""
    tensors, skeleton = flatten_state(state)
    metadata = {"robustlab_skeleton": json.dumps(skeleton)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a file written by `save_state`."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"checkpoint {path}: not a readable safetensors file ({err})") from None
    if "robustlab_skeleton" not in metadata:
        raise ValueError(f"checkpoint {path}: metadata lacks 'robustlab_skeleton'; "
                         "not written by robustlab.save_state")
    return unflatten_state(tensors, json.loads(metadata["robustlab_skeleton"]))


def save_weights(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any]) -> None:
    """Atomically write the model's state_dict as safetensors, `metadata` as JSON strings."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_weights(path: str | Path, model: torch.nn.Module) -> dict[str, Any]:
    """Load weights written by `save_weights` into `model` (strict); return the metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    with safe_open(str(path), framework="pt") as fh:
        metadata = {k: json.loads(v) for k, v in (fh.metadata() or {}).items()}
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"weights file {path} does not match the model: missing {missing}, "
                         f"unexpected {unexpected}")
    return metadata
