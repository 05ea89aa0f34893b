"""robustlab: train adversarially robust image classifiers and evaluate them honestly."""

__version__ = "0.1.0"
