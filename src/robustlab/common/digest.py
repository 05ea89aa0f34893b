"""Digests of the JSON result files robustlab writes and reads back (no torch: reporting uses it).

A result file carries `"sha256"`: the SHA-256 of the canonical JSON of the rest of the file
(keys sorted, no whitespace, non-finite numbers as null, exactly as it was written). A reader
recomputes it, so a file edited after robustlab wrote it is refused with one line naming it.
Files written before digests existed (no `"sha256"` field) are read without the check.
(Weights and checkpoints carry their own SHA-256 in their safetensors metadata:
`runs/checkpoint.py`.)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from robustlab.common.files import FileFormatError, to_json

DIGEST_FIELD = "sha256"


class DigestError(FileFormatError):
    """A result file whose contents no longer match the digest written with them."""


def json_digest(data: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of `data` without its `sha256` field."""
    body = {k: v for k, v in data.items() if k != DIGEST_FIELD}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def with_digest(data: dict[str, Any]) -> dict[str, Any]:
    """`data` as it will read back from disk (strict JSON: tuples as lists, NaN as null, numpy
    scalars as numbers) plus its `sha256` field; write this with `atomic_write_json`."""
    plain = json.loads(to_json({k: v for k, v in data.items() if k != DIGEST_FIELD}))
    return {**plain, DIGEST_FIELD: json_digest(plain)}


EVAL_REDO = ("recompute it with `robustlab evaluate RUN --overwrite`, or delete it and rerun "
             "`robustlab reproduce`")


def check_digest(data: Any, source: str, redo: str = EVAL_REDO) -> Any:
    """Return `data`; DigestError (naming `source`, and `redo`: how to make it again) when its
    `sha256` field does not match its contents. A file without the field (written before
    digests existed) passes."""
    if not isinstance(data, dict) or DIGEST_FIELD not in data:
        return data
    if data[DIGEST_FIELD] != json_digest(data):
        raise DigestError(f"{source}: was edited after robustlab wrote it (its contents do not "
                          f"match the SHA-256 in its '{DIGEST_FIELD}' field), so its numbers are "
                          f"not robustlab's: {redo}")
    return data
