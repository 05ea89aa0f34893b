"""`ConfigError`, the error of every bad configuration value (a leaf: imports nothing).

It lives below every layer so that the config, the methods, the recipes and the run-folder
reader can all raise it without importing each other.
"""


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field, the value and what is
    allowed."""
