"""SVHN (Street View House Numbers), cropped digits: the official format 2 files.

`train_32x32.mat` (73,257 images), `test_32x32.mat` (26,032) and, with `extra=True`,
`extra_32x32.mat` (531,131 "somewhat less difficult" images, added to the training set). Each
is a MATLAB v5 file holding `X`, uint8 [32, 32, 3, N] (row, column, channel, image), and `y`,
[N, 1], the digit with 10 standing for 0 (mapped to 0 here). The files are read with
`scipy.io.loadmat` (the optional extra `robustlab[svhn]`), which builds arrays and never runs
code; the variables' shapes and classes are checked from the headers (`scipy.io.whosmat`)
before any data is read.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from robustlab.common.options import Option, declare
from robustlab.data import checksums, roots
from robustlab.data import download as downloader
from robustlab.data.containers import DatasetInfo, DatasetSplits
from robustlab.data.errors import DataError
from robustlab.data.splitting import make_splits_uint8
from robustlab.registry import DATASETS

FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
OFFICIAL_COUNTS = {"train_32x32.mat": 73257, "test_32x32.mat": 26032, "extra_32x32.mat": 531131}
IMAGE_SHAPE = (32, 32, 3)
# Caps: one file (the official extra_32x32.mat is 1.33 GB) and the images one file may declare.
MAX_FILE_BYTES = 2 << 30
MAX_IMAGES = 1_000_000
DEFAULT_VAL_SIZE = 5000
INFO = dict(name="svhn", num_classes=10, channels=3, image_size=(32, 32),
            mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970),
            class_names=tuple(str(i) for i in range(10)),
            # no augmentation: SVHN's digits are not mirror-symmetric, and the robust-training
            # literature trains SVHN without any (Rice et al. 2020, train_svhn.py)
            augment="none")


@DATASETS.register("svhn")
@declare({
    "extra": Option(False, "bool", "add extra_32x32.mat (531,131 easier images) to the "
                    "training set"),
    "verify": Option(True, "bool", "require the official image counts (73,257 / 26,032 / "
                     "531,131; false: any, e.g. a reduced copy)"),
})
def load_svhn(root: str | os.PathLike[str] | None = None, *,
              val_size: int | float | None = None, split_seed: int = 0,
              download: bool = False, extra: bool, verify: bool) -> DatasetSplits:
    """SVHN cropped digits: 73,257 train (+ 531,131 with `extra`; minus `val_size`, default
    5,000) / 26,032 test, 3x32x32, labels 0-9 (the files' 10 is digit 0)."""
    names = [FILES["train"], FILES["test"]] + ([FILES["extra"]] if extra else [])
    folder, searched = roots.locate(
        "svhn", root, subdirs=("svhn", "SVHN"),
        is_complete=lambda d: all((d / n).is_file() for n in names))
    if folder is None:
        if not download:
            raise roots.not_found("svhn", f"the MATLAB files {', '.join(names)} (format 2, "
                                  f"cropped digits, from {checksums.SVHN_URL})", searched)
        folder = _download(roots.download_dir("svhn", root), names)
    parts = [read_svhn_mat(folder / n, verify=verify) for n in names if n != FILES["test"]]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = read_svhn_mat(folder / FILES["test"], verify=verify)
    source: dict[str, Any] = {"root": str(folder), "files": [str(folder / n) for n in names],
                              "extra": extra, "verified_image_counts": verify}
    return make_splits_uint8(train, test, DatasetInfo(**INFO), source, val_size=val_size,
                             default_val_size=DEFAULT_VAL_SIZE, split_seed=split_seed)


def _scipy_io() -> Any:
    try:
        import scipy.io
    except ImportError:
        raise DataError("svhn: reading its MATLAB files needs scipy, which is not installed; "
                        "expected the optional extra: pip install 'robustlab[svhn]'") from None
    return scipy.io


def _read_errors() -> tuple[type[BaseException], ...]:
    """What scipy raises on a file that is not a readable MATLAB v5 file."""
    from scipy.io.matlab import MatReadError

    return (MatReadError, ValueError, TypeError, KeyError, IndexError, EOFError, OSError,
            NotImplementedError, zlib.error)


def read_svhn_mat(path: Path, *, verify: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 3, 32, 32], labels int64 [N] in 0-9) from one format-2 file."""
    sio = _scipy_io()
    _check_file_size(path)
    try:
        n = _check_headers(path, {name: (shape, cls) for name, shape, cls
                                  in sio.whosmat(str(path))})
        if verify and n != OFFICIAL_COUNTS.get(path.name, n):
            raise DataError(f"{path}: expected {OFFICIAL_COUNTS[path.name]} images as in the "
                            f"official file, found {n}; pass verify=False to load a reduced "
                            f"copy on purpose")
        mat = sio.loadmat(str(path), variable_names=["X", "y"])
    except DataError:
        raise
    except _read_errors() as exc:
        raise DataError(f"{path}: expected a MATLAB v5 file holding X and y (SVHN format 2), "
                        f"found one scipy cannot read: {type(exc).__name__}: {exc}") from exc
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"])
    if x.dtype != np.uint8 or x.shape != (*IMAGE_SHAPE, n) or y.shape != (n, 1):
        raise DataError(f"{path}: expected X uint8 {[*IMAGE_SHAPE, n]} and y [{n}, 1], found X "
                        f"{x.dtype} {list(x.shape)} and y {list(y.shape)}")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), _digits(path, y.reshape(-1))


def _check_file_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: {size} bytes is above the cap of {MAX_FILE_BYTES} bytes for an "
                        f"SVHN file (the official extra_32x32.mat is 1,329,278,602)")


def _check_headers(path: Path, found: dict[str, tuple[tuple[int, ...], str]]) -> int:
    """The image count N the headers declare, after checking X [32, 32, 3, N] uint8 and
    y [N, 1] (any numeric class) without reading the data."""
    if "X" not in found or "y" not in found:
        raise DataError(f"{path}: expected the variables X and y (SVHN format 2), found "
                        f"{', '.join(sorted(found)) or 'none'} (a truncated file, or not SVHN?)")
    (x_shape, x_class), (y_shape, y_class) = found["X"], found["y"]
    n = x_shape[-1] if len(x_shape) == 4 else -1
    if tuple(x_shape[:3]) != IMAGE_SHAPE or x_class != "uint8" or n < 1 or n > MAX_IMAGES:
        raise DataError(f"{path}: expected X of class uint8 and shape [32, 32, 3, N] with "
                        f"1 <= N <= {MAX_IMAGES}, found {x_class} {list(x_shape)}")
    if tuple(y_shape) != (n, 1) or y_class in ("cell", "struct", "char", "object",
                                                 "function", "sparse"):
        raise DataError(f"{path}: expected y of a numeric class and shape [{n}, 1], found "
                        f"{y_class} {list(y_shape)}")
    return n


def _digits(path: Path, y: np.ndarray) -> np.ndarray:
    """The labels as int64 digits: 1-9 stay, 10 becomes 0; anything else is refused."""
    values = y.astype(np.float64)
    bad = ~np.isin(values, np.arange(1, 11))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{path}: expected labels y in 1..10 (10 = digit 0), found "
                        f"{y[i].item()} at index {i}")
    labels = values.astype(np.int64)
    labels[labels == 10] = 0
    return labels


def _download(target: Path, names: list[str]) -> Path:
    """Fetch each missing file (MD5-verified) into `target`."""
    for name in names:
        if not (target / name).is_file():
            downloader.download([checksums.SVHN_URL + name], target / name,
                                md5=checksums.SVHN_MD5[name])
    return target
