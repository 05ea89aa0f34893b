"""The versioned eval-JSON schema identifier and a structural check of eval files.

Bump the major number when a field changes meaning or disappears; readers refuse other majors.
The full field list is in docs/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustlab.attacks.min_norm import DISTANCE_NORMS
from robustlab.common.checks import check_choice, check_int, check_number
from robustlab.common.result_checks import check_eval_values, object_field
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
    check_distances(data, source)
    check_queries(data, source)
    return data


def check_distances(data: dict[str, Any], source: str) -> None:
    """`per_sample.distances` (optional; files before it lack it): per minimum-norm attack,
    `norm` one of DISTANCE_NORMS and `values` a list of `n` distances >= 0 or null."""
    for name, entry in _per_sample_table(data, "distances", source).items():
        field = f"{source}: per_sample.distances.{name}"
        values = entry.get("values") if isinstance(entry, dict) else None
        if not isinstance(values, list) or len(values) != data.get("n"):
            raise EvalFileError(f"{field}.values: expected a list of n = {data.get('n')} "
                                f"distances, got {type(values).__name__}"
                                + (f" of {len(values)}" if isinstance(values, list) else ""))
        check_choice(f"{field}.norm", entry.get("norm"), DISTANCE_NORMS, error=EvalFileError)
        for i, v in enumerate(values):
            check_number(f"{field}.values[{i}]", v, 0.0, allow_none=True, error=EvalFileError,
                         expected="a distance >= 0 or null (no adversarial point found)")


def check_queries(data: dict[str, Any], source: str) -> None:
    """`per_sample.queries` (optional; files before it lack it): per query-counting attack, a
    list of `n` integers >= 0."""
    for name, values in _per_sample_table(data, "queries", source).items():
        field = f"{source}: per_sample.queries.{name}"
        if not isinstance(values, list) or len(values) != data.get("n"):
            raise EvalFileError(f"{field}: expected a list of n = {data.get('n')} query "
                                f"counts, got {type(values).__name__}"
                                + (f" of {len(values)}" if isinstance(values, list) else ""))
        for i, v in enumerate(values):
            check_int(f"{field}[{i}]", v, 0, error=EvalFileError)


def _per_sample_table(data: dict[str, Any], key: str, source: str) -> Mapping[str, Any]:
    """`per_sample.<key>` (an optional table per attack): `{}` when absent, else the table;
    not an object: one line naming the field."""
    per = data.get("per_sample")
    return object_field(per if isinstance(per, dict) else {}, key, "per_sample.", source,
                        EvalFileError)
