"""Reporting: turns result files (eval JSON, run summaries, metrics.jsonl) into report.md,
report.html, figures/*.png, results.json and results.csv. Reads files only; never imports torch.
"""

from robustlab.reporting.report import write_report

__all__ = ["write_report"]
