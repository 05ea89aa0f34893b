"""`load_dataset` / `list_datasets`: the entry points the rest of robustlab uses."""

from __future__ import annotations

import inspect
import os
from typing import Any

from robustlab.common.checks import check_int
from robustlab.data.containers import DatasetSplits
from robustlab.data.errors import DataError
from robustlab.registry import DATASETS

_COMMON = ("root", "val_size", "split_seed", "download")


def list_datasets() -> list[str]:
    """Names accepted by `load_dataset`, sorted."""
    return DATASETS.list()


def load_dataset(name: str, root: str | os.PathLike[str] | None = None, *,
                 val_size: int | float | None = None, split_seed: int = 0,
                 download: bool = False, **options: Any) -> DatasetSplits:
    """Load dataset `name` as in-memory train / val / test splits.

    Args:
        name: a registered dataset (see `list_datasets()`).
        root: folder to read from; None searches $ROBUSTLAB_DATA, system locations and
            ~/.cache/robustlab (see `robustlab.data.roots`).
        val_size: examples carved from the training set for validation (int count or float
            fraction); None = the dataset default (5,000 for the 60k sets and CIFAR-10).
        split_seed: seed of the permutation that selects the validation examples.
        download: fetch the official files (checksum-verified) if they are not found.
        **options: dataset-specific options (e.g. `image_size`, `classes` for "imagefolder").

    Raises:
        RegistryError: unknown name. DataError: missing / bad files or invalid options.
    """
    factory = DATASETS.get(name)
    accepted = [p for p in inspect.signature(factory).parameters if p not in _COMMON]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DataError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(map(repr, unknown))} for dataset {name!r}; accepted: "
                        f"{', '.join(accepted) or '(none)'}")
    check_int("split_seed", split_seed, error=DataError)
    return factory(root, val_size=val_size, split_seed=split_seed, download=download, **options)
