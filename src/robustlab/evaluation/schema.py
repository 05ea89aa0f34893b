"""The versioned eval-JSON schema identifier and a structural check of eval files.

Bump the major number when a field changes meaning or disappears; readers refuse other majors.
The full field list is in docs/evaluation.md.
"""

from __future__ import annotations

from typing import Any

from robustlab.common.result_checks import check_eval_values
from robustlab.common.vocabulary import EVAL_SCHEMA as SCHEMA_VERSION

REQUIRED_KEYS = ("schema", "settings", "settings_key", "model", "n", "clean", "attacks",
                 "worst_case", "audit", "timing", "per_sample")


class EvalFileError(ValueError):
    """An eval file that cannot be used (wrong schema, missing fields, or would be overwritten)."""


def check_eval_dict(data: Any, source: str) -> dict[str, Any]:
    """Return `data` if it is an eval result of this schema's major version with every number
    in its range (`common/result_checks.py`: accuracies in [0, 1], counts integers >= 0, ...)."""
    if not isinstance(data, dict):
        raise EvalFileError(f"{source}: expected a JSON object, found {type(data).__name__}")
    schema = data.get("schema")
    if not isinstance(schema, str) or schema.split("/")[0] != SCHEMA_VERSION.split("/")[0] \
            or schema.split("/")[-1] != SCHEMA_VERSION.split("/")[-1]:
        raise EvalFileError(f"{source}: schema {schema!r} is not {SCHEMA_VERSION!r}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise EvalFileError(f"{source}: missing field(s) {', '.join(missing)}")
    check_eval_values(data, source, error=EvalFileError)
    return data
