"""The value ranges of the result files robustlab reads back: eval JSON and summary.json.

A reader trusts a result file's names only after its values: an accuracy is a fraction in
[0, 1] (a hand-edited 1.5 would show as 150.0 % in the report), a count a non-negative integer,
a budget or a time a finite number >= 0 (the field tables below). Absent fields pass (files of
older versions lack some); null passes where a value can be missing (docs/evaluation.md: "a
value that cannot be computed is null"). The first bad value raises `error` with one line:
``"<file>: <field>: expected <what>, got <value>"`` (the format of `common/checks.py`, which
does every check). No torch here: the report (reporting/collect.py) uses it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from robustlab.common.checks import check_bool, check_choice, check_int, check_number, is_real
from robustlab.common.files import FileFormatError
from robustlab.common.vocabulary import NORMS

# A field's kind -> (check, its keyword arguments). "?" after a kind: null allowed.
_KINDS: dict[str, tuple[Any, dict[str, Any]]] = {
    "fraction": (check_number, {"low": 0.0, "high": 1.0}),
    "gap": (check_number, {"low": -1.0, "high": 1.0}),  # a difference of two fractions
    "count": (check_int, {"low": 0}),
    "positive": (check_int, {"low": 1}),
    "nonneg": (check_number, {"low": 0.0}),  # a budget, a time, a size, a distance
    "bool": (check_bool, {}),
    "norm": (check_choice, {"choices": NORMS}),
}

CONFIDENCE = {"mean": "fraction?", "correct": "fraction?", "incorrect": "fraction?"}
SUMMARY_FIELDS: dict[str, Any] = {
    "test_acc": "fraction?", "test_acc_last": "fraction?", "val_acc": "fraction?",
    "train_time_s": "nonneg?",
    "epoch_time_s_mean": "nonneg?", "peak_mem_mb": "nonneg?", "epochs": "positive?",
    "epochs_done": "count?", "n_train": "count?", "n_val": "count?", "n_test": "count?",
    "n_params": "count?", "eps": "nonneg?", "eps_warmup": "nonneg?", "seed": "count?",
    "world_size": "positive?",
}
_ATTACK_FIELDS: dict[str, Any] = {
    "acc": "fraction", "gap": "gap?", "success_rate": "fraction?", "mixed_acc": "fraction?",
    "ece": "fraction?", "seconds": "nonneg?", "confidence": CONFIDENCE,
    "perturbation": {k: "nonneg?" for k in ("l2_mean", "l2_median", "linf_mean", "linf_median",
                                           "unbounded_l2_median")},
    "queries": {k: "nonneg?" for k in ("mean", "median", "median_broken")},
}
_RESULT_FIELDS: dict[str, Any] = {  # an evaluation (also its `non_adaptive` part)
    "n": "positive",  # an evaluation of no images has no accuracy to report
    "clean": {"acc": "fraction", "ece": "fraction?", "confidence": CONFIDENCE},
    "worst_case": {"acc": "fraction", "gap": "gap?"},
    "mixed": {"acc": "fraction?"},
}
EVAL_FIELDS: dict[str, Any] = {
    **_RESULT_FIELDS,
    "settings": {"eps": "nonneg", "norm": "norm", "n": "positive?", "batch_size": "positive?",
                 "seed": "count?", "curve_n": "positive?", "audit_n": "positive?"},
    "audit": {"flagged": "bool?", "n": "count?", "tolerance": "nonneg?"},
    "timing": {"total_s": "nonneg?", "clean_s": "nonneg?", "curve_s": "nonneg?",
               "audit_s": "nonneg?"},
    "run": {"eps": "nonneg?", "seed": "count?", "epochs": "positive?"},
    "training": {**SUMMARY_FIELDS, "complete": "bool?"},
}
_CURVE_POINT = {"factor": "nonneg?", "eps": "nonneg?", "acc": "fraction", "n": "count?"}


def check_summary_values(data: Mapping[str, Any], source: str, *,
                         error: type[Exception] = FileFormatError) -> Mapping[str, Any]:
    """`data` (a run's summary.json) if every number in it is in its range."""
    check_fields(data, SUMMARY_FIELDS, source, error=error)
    return data


def check_eval_values(data: Mapping[str, Any], source: str, *,
                      error: type[Exception] = FileFormatError) -> Mapping[str, Any]:
    """`data` (an eval JSON) if every number in it is in its range: the fields above, each
    attack's, each curve point's and the non-adaptive part's."""
    check_fields(data, EVAL_FIELDS, source, error=error)
    _check_attacks(data, "", source, error)
    _check_below_clean(data, "", source, error)
    points = object_field(data, "curve", "", source, error).get("points") or []
    if not isinstance(points, list):
        raise error(f"{source}: curve.points: expected a list, got {type(points).__name__}")
    for i, point in enumerate(points):
        check_fields(point, _CURVE_POINT, source, prefix=f"curve.points[{i}].", error=error)
    timing = object_field(data, "timing", "", source, error)
    times = object_field(timing, "attacks_s", "timing.", source, error)
    check_fields(times, dict.fromkeys(times, "nonneg?"), source, prefix="timing.attacks_s.",
                 error=error)
    plain = data.get("non_adaptive")
    if plain is not None:
        check_fields(plain, _RESULT_FIELDS, source, prefix="non_adaptive.", error=error)
        _check_attacks(plain, "non_adaptive.", source, error)
        _check_below_clean(plain, "non_adaptive.", source, error)
    return data


def check_fields(data: Any, fields: Mapping[str, Any], source: str, *, prefix: str = "",
                 error: type[Exception] = FileFormatError) -> None:
    """Every field of `fields` present in `data` checked by its kind (a nested table for an
    object); the message names `source` and the dotted field."""
    if not isinstance(data, Mapping):
        raise error(f"{source}: {prefix.rstrip('.') or 'file'}: expected a JSON object, got "
                    f"{type(data).__name__}")
    for name, kind in fields.items():
        if name not in data:
            continue
        value, field = data[name], f"{source}: {prefix}{name}"
        if isinstance(kind, Mapping):
            if value is not None:
                check_fields(value, kind, source, prefix=f"{prefix}{name}.", error=error)
            continue
        check, kwargs = _KINDS[kind.rstrip("?")]
        if kind.endswith("?"):
            if value is None:
                continue
            if check in (check_number, check_int):  # the message says "or null"
                kwargs = {**kwargs, "allow_none": True}
        check(field, value, **kwargs, error=error)


def _check_attacks(data: Mapping[str, Any], prefix: str, source: str,
                   error: type[Exception]) -> None:
    for name, att in object_field(data, "attacks", prefix, source, error).items():
        check_fields(att, _ATTACK_FIELDS, source, prefix=f"{prefix}attacks.{name}.",
                     error=error)


# Float slack of the cross-field comparison (both are counts over the same n images).
_ACC_SLACK = 1e-9


def _check_below_clean(data: Mapping[str, Any], prefix: str, source: str,
                       error: type[Exception]) -> None:
    """Cross-field: every robust accuracy (each attack's, the worst case's) is at most the
    clean accuracy, since an image counts as robust only if it is classified correctly clean
    (evaluation/attack_runner.py: robust = clean_correct & correct); a file that says more
    was edited."""
    clean = object_field(data, "clean", prefix, source, error).get("acc")
    if not is_real(clean):
        return
    robust = {f"attacks.{name}.acc": att.get("acc")
              for name, att in object_field(data, "attacks", prefix, source, error).items()}
    robust["worst_case.acc"] = object_field(data, "worst_case", prefix, source, error).get("acc")
    for field, acc in robust.items():
        if is_real(acc) and acc > clean + _ACC_SLACK:
            raise error(f"{source}: {prefix}{field}: expected at most {prefix}clean.acc "
                        f"{clean:g} (an image counts as robust only if it is classified "
                        f"correctly clean), got {acc:g}")


def object_field(data: Mapping[str, Any], name: str, prefix: str, source: str,
                 error: type[Exception]) -> Mapping[str, Any]:
    """`data[name]` when it is an object ({} when absent or null)."""
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{source}: {prefix}{name}: expected a JSON object, got "
                    f"{type(value).__name__}")
    return value
