"""Resuming a killed evaluation: every finished batch of every attack is kept in a partial file
beside the eval file (`.eval.json.partial`, one safetensors file, rewritten atomically after
each batch), keyed by a digest of the settings, the model's weights and the images. A rerun
with the same key attacks only the batches the file lacks; each attack call is seeded per
batch, so the per-sample results, and the eval JSON, equal an uninterrupted run's (timings
aside). The file is deleted once the eval file is written; a file of other settings, another
model or other images is ignored and replaced.

Not kept: the accuracy-versus-eps curve and the audit (recomputed), evaluations with
`--save-adv` (their adversarial images would make the file large) and sharded ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from robustlab.common.files import atomic_write_bytes

FIELDS = ("correct", "conf", "l2", "linf", "raw_l2", "raw_fooled")
OPTIONAL_FIELD = "distances"  # kept for the minimum-norm attacks (fmn, ddn) only
# the optional fields: OPTIONAL_FIELD, "l0" (pixels changed) of an l0 evaluation and
# "queries" (per-image query counts of square, sparse-rs, spsa, hop-skip-jump)
OPTIONAL_FIELDS = (OPTIONAL_FIELD, "l0", "queries")


def partial_path(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def resume_key(settings_key: str, model: nn.Module, x: Tensor, y: Tensor) -> str:
    """What a partial file must match: the settings, the weights (every tensor's bytes) and
    the images and labels attacked."""
    h = hashlib.sha256(settings_key.encode())
    for name, t in [*model.state_dict().items(), ("x", x), ("y", y)]:
        h.update(name.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class PartialResults:
    """The finished batches of one evaluation (see the module docstring)."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self.tensors: dict[str, Tensor] = self._read()
        self.loaded = len({k.rsplit("/", 1)[0] for k in self.tensors})  # batches on disk

    def _read(self) -> dict[str, Tensor]:
        if not self.path.is_file():
            return {}
        try:
            from safetensors import safe_open

            with safe_open(str(self.path), framework="pt") as f:
                if (f.metadata() or {}).get("key") != self.key:
                    return {}  # another evaluation's: replaced at the first batch
            return load_file(str(self.path))
        except (OSError, SafetensorError, ValueError):
            return {}  # unreadable (not ours, damaged): start afresh

    def batches(self, attack: str) -> AttackBatches:
        return AttackBatches(self, attack)

    def get(self, attack: str, batch: int) -> dict[str, Tensor] | None:
        keys = [f"{attack}/{batch}/{f}" for f in FIELDS]
        if not all(k in self.tensors for k in keys):
            return None
        out = {f: self.tensors[k] for f, k in zip(FIELDS, keys, strict=True)}
        extra = {f: f"{attack}/{batch}/{f}" for f in OPTIONAL_FIELDS}  # distances, l0, queries
        return {**out, **{f: self.tensors[k] for f, k in extra.items() if k in self.tensors}}

    def put(self, attack: str, batch: int, result: dict[str, Tensor]) -> None:
        for f in FIELDS:
            self.tensors[f"{attack}/{batch}/{f}"] = result[f].contiguous()
        for f in OPTIONAL_FIELDS:
            if f in result:
                self.tensors[f"{attack}/{batch}/{f}"] = result[f]
        atomic_write_bytes(self.path, save(self.tensors, metadata={"key": self.key}))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class AttackBatches:
    """One attack's view of a `PartialResults`: `get(j)` / `put(j, result)` by batch index."""

    def __init__(self, partial: PartialResults, attack: str) -> None:
        self.partial, self.attack = partial, attack

    def get(self, batch: int) -> dict[str, Any] | None:
        return self.partial.get(self.attack, batch)

    def put(self, batch: int, result: dict[str, Any]) -> None:
        self.partial.put(self.attack, batch, result)
