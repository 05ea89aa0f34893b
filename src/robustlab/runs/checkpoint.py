"""Checkpoints as safetensors + JSON (never pickle).

`flatten_state` turns any nested state (optimizer, scheduler, method state) into a flat dict of
tensors plus a JSON skeleton that records where each tensor goes, so the whole training state fits
in one `.safetensors` file whose metadata holds the JSON. One file means one atomic rename: a
kill can never leave weights and optimizer state from different epochs.
"""

from __future__ import annotations

import hashlib
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
    """Read a file written by `save_state`; WeightsError if it is damaged."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path))
        if "robustlab_skeleton" not in metadata:
            raise ValueError("metadata lacks 'robustlab_skeleton'; not written by save_state")
        return unflatten_state(tensors, json.loads(metadata["robustlab_skeleton"]))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"checkpoint {path}: not a readable robustlab checkpoint ({err})"
                           ) from None


DIGEST_KEY = "weights_sha256"


class WeightsError(ValueError):
    """A weights file that cannot be trusted: unreadable, altered (digest mismatch) or made for
    another model."""


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes (in name order): any flipped
    bit in the weights changes it."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_weights(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any]) -> str:
    """Atomically write the model's state_dict as safetensors, `metadata` as JSON strings plus
    the weights' SHA-256 (`weights_sha256`); returns that digest."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    digest = weights_digest(tensors)
    meta = {k: json.dumps(v) for k, v in {**metadata, DIGEST_KEY: digest}.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return digest


def load_weights(path: str | Path, model: torch.nn.Module) -> dict[str, Any]:
    """Load weights written by `save_weights` into `model` (strict); return the metadata.

    Raises WeightsError when the file is unreadable, its digest does not match its tensors (a
    damaged or altered file), or its tensors do not fit the model (names or shapes)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
        metadata = {k: json.loads(v) for k, v in raw.items()}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"weights file {path}: not a readable safetensors file ({err})"
                           ) from None
    if DIGEST_KEY in metadata and weights_digest(state) != metadata[DIGEST_KEY]:
        raise WeightsError(f"weights file {path}: SHA-256 of the tensors does not match the "
                           "digest written with them; the file is damaged or was altered")
    _check_fits(path, model, state)
    model.load_state_dict(state)
    return metadata


def _check_fits(path: Path, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: {tuple(state[k].shape)} (model {tuple(v.shape)})"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise WeightsError(f"weights file {path} does not match the model: missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]}, wrong shapes "
                           f"{shapes[:5]}")
