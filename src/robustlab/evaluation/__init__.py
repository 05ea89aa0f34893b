"""Evaluation: clean and adversarial metrics per sample, the gradient-masking audit, eval JSON.

`evaluate_model(model, split, settings)` returns the JSON-ready result dict documented in
docs/evaluation.md (schema `SCHEMA_VERSION`). Reporting reads those files; it never imports this
package (which imports torch).
"""

from robustlab.evaluation.evaluate import evaluate_model
from robustlab.evaluation.schema import SCHEMA_VERSION, EvalFileError
from robustlab.evaluation.settings import EvalSettings, EvalSettingsError
from robustlab.evaluation.table import format_result_table

__all__ = ["SCHEMA_VERSION", "EvalFileError", "EvalSettings", "EvalSettingsError",
           "evaluate_model", "format_result_table"]
