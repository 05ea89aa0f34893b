"""Training methods, registered by name in `robustlab.registry.METHODS`.

Importing this package imports every module of it (`plugins.import_submodules`), so a method
file registers itself: adding a method is its file and its test.
"""

from robustlab.plugins import import_submodules
from robustlab.registry import METHODS
from robustlab.training.methods.base import BatchOutput, TrainContext, TrainingMethod

import_submodules(__name__, __path__)  # every method file registers itself


def list_methods() -> list[str]:
    return METHODS.list()


def create_method(name: str, **options):
    return METHODS.create(name, **options)


__all__ = ["BatchOutput", "TrainContext", "TrainingMethod", "create_method", "list_methods"]
