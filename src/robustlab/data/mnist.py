"""MNIST and Fashion-MNIST from their IDX files (`.gz` or raw), checksum-verified.

Loading the full 70,000 images takes well under a second: the decompressed bytes are viewed
with `numpy.frombuffer` and converted to float32 in one vectorised operation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from robustlab.common.options import Option, declare
from robustlab.data import checksums, idx, roots
from robustlab.data import download as downloader
from robustlab.data.containers import DatasetInfo, DatasetSplits
from robustlab.data.errors import DataError
from robustlab.data.splitting import check_split_seed, make_splits_uint8
from robustlab.registry import DATASETS

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEFAULT_VAL_SIZE = 5000

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")

MNIST_INFO = DatasetInfo(name="mnist", num_classes=10, channels=1, image_size=(28, 28),
                         mean=(0.1307,), std=(0.3081,),
                         class_names=tuple(str(i) for i in range(10)))
FASHION_MNIST_INFO = DatasetInfo(name="fashion-mnist", num_classes=10, channels=1,
                                 image_size=(28, 28), mean=(0.2860,), std=(0.3530,),
                                 class_names=FASHION_CLASSES)
# The options of both IDX datasets (`load_dataset(name, ..., verify=False)`), declared once.
IDX_OPTIONS = {"verify": Option(True, "bool", "check the SHA-256 of the decompressed files "
                                "(false: a deliberately reduced copy)")}


@DATASETS.register("mnist")
@declare(IDX_OPTIONS)
def load_mnist(root: str | os.PathLike[str] | None = None, *, val_size: int | float | None = None,
               split_seed: int = 0, download: bool = False, verify: bool) -> DatasetSplits:
    """MNIST handwritten digits: 60,000 train (minus `val_size`, default 5,000) / 10,000 test.

    `verify=False` skips the SHA-256 check of the decompressed files (structure is still
    validated), e.g. for a deliberately reduced copy.
    """
    return _load_idx_dataset(MNIST_INFO, ("mnist", "MNIST/raw"), checksums.MNIST_MIRRORS,
                             checksums.MNIST_SHA256, root, val_size=val_size,
                             split_seed=split_seed, download=download, verify=verify)


@DATASETS.register("fashion-mnist")
@declare(IDX_OPTIONS)
def load_fashion_mnist(root: str | os.PathLike[str] | None = None, *,
                       val_size: int | float | None = None, split_seed: int = 0,
                       download: bool = False, verify: bool) -> DatasetSplits:
    """Fashion-MNIST (Zalando): 60,000 train (minus `val_size`, default 5,000) / 10,000 test."""
    return _load_idx_dataset(FASHION_MNIST_INFO,
                             ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
                             checksums.FASHION_MNIST_MIRRORS, checksums.FASHION_MNIST_SHA256,
                             root, val_size=val_size, split_seed=split_seed, download=download,
                             verify=verify)


def _load_idx_dataset(info: DatasetInfo, subdirs: tuple[str, ...], mirrors: tuple[str, ...],
                      table: dict[str, tuple[str, str | None]], root: Any, *,
                      val_size: int | float | None, split_seed: int, download: bool,
                      verify: bool) -> DatasetSplits:
    check_split_seed(split_seed)
    stems = [s for pair in FILES.values() for s in pair]
    folder, searched = roots.locate(
        info.name, root, subdirs=subdirs,
        is_complete=lambda d: all(idx.find_idx_file(d, s) is not None for s in stems))
    if folder is None:
        if not download:
            what = "the four IDX files " + ", ".join(f"{s}[.gz]" for s in stems)
            raise roots.not_found(info.name, what, searched)
        folder = _download(info.name, roots.download_dir(info.name, root), mirrors, table)
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    files: list[str] = []
    for split, (img_stem, lbl_stem) in FILES.items():
        images = idx.read_idx(idx.find_idx_file(folder, img_stem), ndim=3)
        labels = idx.read_idx(idx.find_idx_file(folder, lbl_stem), ndim=1)
        _check_pair(images, labels, info)
        if verify:
            for item, stem in ((images, img_stem), (labels, lbl_stem)):
                _check_sha256(item, table[stem][0], info.name)
        arrays[split] = (images.array[:, None], labels.array)
        files += [str(images.path), str(labels.path)]
    source = {"root": str(folder), "files": files, "verified_sha256": verify}
    return make_splits_uint8(arrays["train"], arrays["test"], info, source, val_size=val_size,
                             default_val_size=DEFAULT_VAL_SIZE, split_seed=split_seed)


def _check_pair(images: idx.IdxArray, labels: idx.IdxArray, info: DatasetInfo) -> None:
    n_img, h, w = images.array.shape
    n_lbl = labels.array.shape[0]
    if n_img == 0:  # an empty test split would report no accuracy at all, silently
        raise DataError(f"{images.path}: holds 0 images; expected at least one {info.name} "
                        f"image in every split file")
    if n_img != n_lbl:
        raise DataError(f"count mismatch: {images.path} holds {n_img} images but "
                        f"{labels.path} holds {n_lbl} labels; expected equal counts")
    if (h, w) != tuple(info.image_size):
        raise DataError(f"{images.path}: expected {info.name} images of size "
                        f"{info.image_size[0]}x{info.image_size[1]}, found {h}x{w}")
    if n_lbl and int(labels.array.max()) >= info.num_classes:
        raise DataError(f"{labels.path}: expected labels in [0, {info.num_classes - 1}], "
                        f"found {int(labels.array.max())}")


def _check_sha256(item: idx.IdxArray, expected: str, name: str) -> None:
    if item.sha256 != expected:
        raise DataError(f"checksum mismatch for {item.path}: expected the official {name} "
                        f"file with sha256 {expected} (of the decompressed IDX bytes), found "
                        f"{item.sha256}. Replace the file, or pass verify=False to load a "
                        f"modified copy on purpose.")


def _download(name: str, target: Path, mirrors: tuple[str, ...],
              table: dict[str, tuple[str, str | None]]) -> Path:
    for stem, (payload_sha, gz_sha) in table.items():
        if idx.find_idx_file(target, stem) is not None:  # already there (.gz or raw)
            continue
        dest = target / f"{stem}.gz"

        def check(tmp: Path, label: str, expected: str = payload_sha) -> None:
            digest = _payload_sha256(tmp)
            if digest != expected:
                raise DataError(f"checksum mismatch for {label}: expected decompressed sha256 "
                                f"{expected}, found {digest}")

        downloader.download([m + f"{stem}.gz" for m in mirrors], dest, sha256=gz_sha, check=check)
    return target


def _payload_sha256(path: Path) -> str:
    """SHA-256 of the decompressed bytes, streamed and size-capped (`idx.payload_sha256`)."""
    return idx.payload_sha256(path)
