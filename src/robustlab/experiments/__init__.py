"""Experiments: presets (as data), the `reproduce` pipeline and the `evaluate` command."""
