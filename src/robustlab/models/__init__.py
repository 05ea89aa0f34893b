"""Model layer: classifiers that take pixel-space inputs and normalise as their first layer.

`create_model(name, *, num_classes, in_channels, mean, std, image_size, **options)` builds
any model registered in `robustlab.registry.MODELS`; `list_models()` names them.
"""

from . import autoencoder, efficientnet, lenet, preact_resnet, resnet, smallcnn  # noqa: F401
from .common import NormalizedClassifier
from .factory import create_model, list_models
from .normalize import Normalize
from .params import count_parameters

__all__ = [
    "Normalize",
    "NormalizedClassifier",
    "count_parameters",
    "create_model",
    "list_models",
]
