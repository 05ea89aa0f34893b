"""Tiny dataset folders in each built-in dataset's official on-disk format, written by the tests
(`write_dataset(name, folder) -> (root, options)` for `load_dataset(name, root, **options)`).

A dataset registered without a writer here (or `write_files` in its own test file) fails
`tests/test_registry_contracts.py`: every dataset gets the same contract tests."""

from __future__ import annotations

import gzip
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """`array` as an IDX file (uint8 data; `magic` overrides the header's magic number)."""
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True,
                     **override: bytes) -> Path:
    """A tiny but well-formed MNIST-layout folder; `override[stem]` replaces a file (None:
    leaves it out)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, 28, 28))),
        "train-labels-idx1-ubyte": idx_bytes(np.arange(n_train) % 10),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte": idx_bytes(np.arange(n_test) % 10),
    }
    files.update(override)
    for stem, data in files.items():
        if data is None:
            continue
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return folder


def _mnist(folder: Path) -> tuple[Path, dict[str, Any]]:
    write_idx_folder(folder / "mnist", n_train=40, n_test=20)
    return folder, {"verify": False, "val_size": 10}


def _fashion(folder: Path) -> tuple[Path, dict[str, Any]]:
    write_idx_folder(folder / "fashion-mnist", n_train=40, n_test=20)
    return folder, {"verify": False, "val_size": 10}


def _cifar(folder: Path) -> tuple[Path, dict[str, Any]]:
    target = folder / "cifar-10-batches-bin"
    target.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}.bin", 8) for i in range(1, 6)] + [("test_batch.bin", 10)]:
        labels = (np.arange(n) % 10).astype(np.uint8)
        pixels = rng.integers(0, 256, (n, 3 * 32 * 32)).astype(np.uint8)
        (target / name).write_bytes(np.concatenate([labels[:, None], pixels], 1).tobytes())
    return folder, {"verify": False, "val_size": 10}


def _imagefolder(folder: Path) -> tuple[Path, dict[str, Any]]:
    from PIL import Image

    for split, n in (("train", 6), ("val", 2)):
        for c, cls in enumerate(("cat", "dog", "fox")):
            (folder / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (12, 10), (40 * c, 20 * i, 0)).save(folder / split / cls /
                                                                      f"{i}.png")
    return folder, {"image_size": 8, "val_size": 3, "workers": 1}


def _synthetic(folder: Path) -> tuple[Path, dict[str, Any]]:
    return folder, {"n_train": 60, "n_test": 20}


WRITERS: dict[str, Callable[[Path], tuple[Path, dict[str, Any]]]] = {
    "mnist": _mnist, "fashion-mnist": _fashion, "cifar10": _cifar, "imagefolder": _imagefolder,
    "synthetic": _synthetic,
}


def write_dataset(name: str, folder: Path) -> tuple[Path, dict[str, Any]]:
    """Write dataset `name`'s files in its official format into `folder`; return the root to
    load from and the options to load with. A dataset not listed above brings its writer in
    its own test file: `write_files(folder)` in tests/test_dataset_<name>.py."""
    if name in WRITERS:
        return WRITERS[name](folder)
    module = f"test_dataset_{name.replace('-', '_')}"
    try:
        writer = importlib.import_module(module).write_files
    except (ImportError, AttributeError):
        raise AssertionError(f"dataset {name!r} has no writer: add write_files(folder) to "
                             f"tests/{module}.py so the registry contract tests cover it") from None
    return writer(folder)
