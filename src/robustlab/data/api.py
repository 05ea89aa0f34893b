"""`load_dataset` / `list_datasets`: the entry points the rest of robustlab uses."""

from __future__ import annotations

import os
from typing import Any

from robustlab.common.checks import check_bool, check_int
from robustlab.common.options import resolve_options
from robustlab.data.containers import DatasetSplits
from robustlab.data.errors import DataError
from robustlab.registry import DATASETS


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
        **options: dataset-specific options (e.g. `image_size`, `classes` for "imagefolder"),
            as the dataset declares them (its factory's `OPTIONS`, `common.options.declare`):
            each is checked here, once, and an absent one is its declared default.

    Raises:
        RegistryError: unknown name. DataError: missing / bad files or invalid options (the
        message names the option as `<dataset> <option>`, e.g. "mnist verify").
    """
    factory = DATASETS.get(name)
    values = resolve_options(getattr(factory, "OPTIONS", {}), options,
                             owner=f"dataset {name!r}", error=DataError, prefix=f"{name} ")
    check_bool(f"{name} download", download, error=DataError)  # for every dataset, here once
    check_int("split_seed", split_seed, error=DataError)
    return factory(root, val_size=val_size, split_seed=split_seed, download=download, **values)
