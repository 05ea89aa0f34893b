"""Training methods, registered by name in `robustlab.registry.METHODS`.

Importing this package registers every method module below.
"""

from robustlab.registry import METHODS
from robustlab.training.methods import (  # noqa: F401
    adversarial,
    autoencoder,
    free_at,
    gaussian_aug,
    hybrid,
    mart,
    regularization,
    standard,
    trades,
)
from robustlab.training.methods.base import BatchOutput, TrainContext, TrainingMethod


def list_methods() -> list[str]:
    return METHODS.list()


def create_method(name: str, **options):
    return METHODS.create(name, **options)


__all__ = ["BatchOutput", "TrainContext", "TrainingMethod", "create_method", "list_methods"]
