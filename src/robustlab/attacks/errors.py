"""`AttackError`: the one exception type for invalid attack configurations and inputs."""

from __future__ import annotations


class AttackError(ValueError):
    """Invalid attack configuration or invalid attack inputs (raised before any compute).

    A `ValueError`, so callers catching ValueError keep working; the message names the argument.
    """
