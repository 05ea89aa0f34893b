"""Datasets as in-memory tensors: root resolution, verified loading, splits and batching.

Every dataset is returned by `load_dataset(name, ...)` as a `DatasetSplits` whose splits hold
float32 images [N, C, H, W] in [0, 1] and int64 labels [N]. See docs/data.md.
"""

from robustlab.data import cifar as _cifar  # noqa: F401  (registers cifar10)
from robustlab.data import imagefolder as _imagefolder  # noqa: F401  (registers imagefolder)
from robustlab.data import mnist as _mnist  # noqa: F401  (registers mnist, fashion-mnist)
from robustlab.data import synthetic as _synthetic  # noqa: F401  (registers synthetic)
from robustlab.data.api import list_datasets, load_dataset
from robustlab.data.batches import iterate_batches, random_crop_flip
from robustlab.data.containers import AUGMENTATIONS, ArraySplit, DatasetInfo, DatasetSplits
from robustlab.data.errors import DataError

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
