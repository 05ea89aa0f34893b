"""Datasets as in-memory tensors: root resolution, verified loading, splits and batching.

Every dataset is returned by `load_dataset(name, ...)` as a `DatasetSplits` whose splits hold
float32 images [N, C, H, W] in [0, 1] and int64 labels [N]. See docs/data.md.
"""

from robustlab.data.api import list_datasets, load_dataset
from robustlab.data.batches import iterate_batches, random_crop_flip
from robustlab.data.containers import AUGMENTATIONS, ArraySplit, DatasetInfo, DatasetSplits
from robustlab.data.errors import DataError
from robustlab.plugins import import_submodules

import_submodules(__name__, __path__)  # every dataset file registers itself

__all__ = [
    "AUGMENTATIONS",
    "ArraySplit",
    "DataError",
    "DatasetInfo",
    "DatasetSplits",
    "iterate_batches",
    "list_datasets",
    "load_dataset",
    "random_crop_flip",
]
