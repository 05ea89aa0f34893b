"""Model layer: classifiers that take pixel-space inputs and normalise as their first layer.

`create_model(name, *, num_classes, in_channels, mean, std, image_size, **options)` builds
any model registered in `robustlab.registry.MODELS`; `list_models()` names them.
"""

from robustlab.models.common import NormalizedClassifier
from robustlab.models.factory import create_model, list_models
from robustlab.models.normalize import Normalize
from robustlab.models.params import count_parameters
from robustlab.plugins import import_submodules

import_submodules(__name__, __path__)  # every model file registers itself

__all__ = [
    "Normalize",
    "NormalizedClassifier",
    "count_parameters",
    "create_model",
    "list_models",
]
