"""`DataError`: the one exception type for missing, malformed or unverifiable data."""

from __future__ import annotations


class DataError(ValueError):
    """Missing data, a bad file or an invalid data option.

    The message always names the file (or option), what was expected and what was found, and,
    for missing data, every place that was searched and how to fix it.
    """
