"""Checkpoints as safetensors + JSON (never pickle).

`flatten_state` turns any nested state (optimizer, scheduler, method state) into a flat dict of
tensors plus a JSON skeleton that records where each tensor goes, so the whole training state fits
in one `.safetensors` file whose metadata holds the JSON. One file means one atomic rename: a
kill can never leave weights and optimizer state from different epochs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
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


def write_safetensors(path: str | Path, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str]) -> None:
    """The one way robustlab writes a safetensors file: atomically (whole or not at all), and
    any I/O failure, a full disk above all, raised as an OSError naming `path` (safetensors
    raises its own SafetensorError, which the CLI would not recognise as an I/O error)."""
    path = Path(path)
    try:
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    except SafetensorError as err:
        code = _os_error_code(err)
        if code is None:
            raise  # not an I/O failure: invalid tensors, a bug
        raise OSError(code, os.strerror(code), str(path)) from None


def _os_error_code(err: SafetensorError) -> int | None:
    """The errno of a SafetensorError that wraps an I/O error ("... I/O error: No space left
    on device (os error 28)"); None for any other SafetensorError."""
    found = re.search(r"os error (\d+)", str(err))
    if found:
        return int(found.group(1))
    return errno.EIO if "I/O error" in str(err) else None


STATE_DIGEST_KEY = "robustlab_sha256"


def state_digest(tensors: dict[str, torch.Tensor], skeleton: str) -> str:
    """SHA-256 over a checkpoint's tensors (as `weights_digest`) and its JSON skeleton (the
    optimizer's and method's plain values, the metrics, the epoch)."""
    return hashlib.sha256(f"{weights_digest(tensors)}|{skeleton}".encode()).hexdigest()


def save_state(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically write nested `state` (tensors and plain values) to one safetensors file, with
    the SHA-256 of all of it (`robustlab_sha256`) in its metadata."""
    tensors, skeleton = flatten_state(state)
    text = json.dumps(skeleton)
    metadata = {"robustlab_skeleton": text, STATE_DIGEST_KEY: state_digest(tensors, text)}
    write_safetensors(path, tensors, metadata)


RUN_CONFIG_KEY = "run_config_sha256"


def load_state(path: str | Path, *, run_config_sha256: str | None = None) -> dict[str, Any]:
    """Read a file written by `save_state`; WeightsError if it is damaged: unreadable, or its
    digest does not match its contents (checkpoints written before digests: not checked).

    `run_config_sha256`: the digest of the run this checkpoint should belong to; a state that
    records another (`RUN_CONFIG_KEY`) is refused (checkpoints written before: not checked)."""
    state = _read_state(Path(path))
    recorded = state.get(RUN_CONFIG_KEY) if isinstance(state, dict) else None
    if run_config_sha256 is not None and recorded is not None and recorded != run_config_sha256:
        raise WeightsError(f"checkpoint {path}: written by another run (its run-config SHA-256 "
                           f"{str(recorded)[:12]}... is not this run's {run_config_sha256[:12]}..."
                           f", from config.json); {_NO_RESUME}")
    return state


def _read_state(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        # copies, not views of a mapping of the file: the optimizer keeps these tensors, and a
        # mapping would pin the replaced checkpoint's disk space for the rest of the run
        tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
        if "robustlab_skeleton" not in metadata:
            raise ValueError("metadata lacks 'robustlab_skeleton'; not written by save_state")
        text = metadata["robustlab_skeleton"]
        skeleton = json.loads(text)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"checkpoint {path}: not a readable robustlab checkpoint ({err}); "
                           f"{_NO_RESUME}") from None
    recorded = metadata.get(STATE_DIGEST_KEY)
    if recorded is not None and recorded != state_digest(tensors, text):
        raise WeightsError(f"checkpoint {path}: SHA-256 of its tensors and state does not match "
                           f"the digest written with them: the file is damaged; {_NO_RESUME}")
    try:
        return unflatten_state(tensors, skeleton)
    except (KeyError, TypeError) as err:
        raise WeightsError(f"checkpoint {path}: not a readable robustlab checkpoint ({err}); "
                           f"{_NO_RESUME}") from None


_NO_RESUME = ("the run cannot be resumed from it: pass --overwrite (instead of --resume) to "
              "train it again from the start")


DIGEST_KEY = "weights_sha256"
AVERAGED_DIGEST_KEY = "averaged_weights_sha256"  # summary.json's, of model-averaged.safetensors


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
    write_safetensors(path, tensors, meta)
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
