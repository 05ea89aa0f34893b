"""CIFAR-10 from the official binary version (`cifar-10-batches-bin`).

Each file is a sequence of 3,073-byte records: 1 label byte (0-9) followed by 3,072 pixel bytes
(the 1,024 red, then green, then blue values of a 32x32 image, rows in order). Training files
`data_batch_1.bin` .. `data_batch_5.bin`, test file `test_batch.bin`; `batches.meta.txt` holds
the class names. The python-pickle version is not read: its arrays are pickled numpy objects,
which only an unpickler that imports code could load, and we do not unpickle code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from robustlab.common.options import Option, declare
from robustlab.data import checksums, roots
from robustlab.data import download as downloader
from robustlab.data.archives import ArchiveLayout, extract_tar
from robustlab.data.containers import DatasetInfo, DatasetSplits
from robustlab.data.errors import DataError
from robustlab.data.splitting import make_splits_uint8
from robustlab.registry import DATASETS

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
OFFICIAL_RECORDS = 10000
FOLDER = "cifar-10-batches-bin"
ARCHIVE = "cifar-10-binary.tar.gz"
# Caps, in bytes, on what is read or extracted: a batch file (the official ones are 30.7 MB), one
# archive member and the whole extracted archive (the official archive expands to 185 MB).
MAX_FILE_BYTES = 8 * OFFICIAL_RECORDS * RECORD
MAX_MEMBER_BYTES = MAX_FILE_BYTES
MAX_EXTRACT_BYTES = 1 << 30
DEFAULT_VAL_SIZE = 5000
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")


@DATASETS.register("cifar10")
@declare({"verify": Option(True, "bool", "require the official 10,000 records per file "
                           "(false: any whole number of records, e.g. a reduced copy)")})
def load_cifar10(root: str | os.PathLike[str] | None = None, *,
                 val_size: int | float | None = None, split_seed: int = 0,
                 download: bool = False, verify: bool) -> DatasetSplits:
    """CIFAR-10: 50,000 train (minus `val_size`, default 5,000) / 10,000 test, 3x32x32.

    `verify=True` requires the official 10,000 records per file (the publisher gives no
    per-file checksums; downloads are verified against the archive's published MD5);
    `verify=False` accepts any whole number of records, e.g. a reduced copy.
    """
    names = TRAIN_FILES + TEST_FILES
    folder, searched = roots.locate(
        "cifar10", root, subdirs=(f"cifar10/{FOLDER}", FOLDER, "cifar10", "cifar-10"),
        is_complete=lambda d: all((d / n).is_file() for n in names))
    if folder is None:
        if not download:
            err = roots.not_found("cifar10", f"the binary files {', '.join(names)} "
                                  f"(the folder {FOLDER}/ from {ARCHIVE})", searched)
            raise DataError(str(err) + _pickle_version_hint(root)) from None
        folder = _download(roots.download_dir("cifar10", root))
    train = _read_files([folder / n for n in TRAIN_FILES], verify)
    test = _read_files([folder / n for n in TEST_FILES], verify)
    info = DatasetInfo(name="cifar10", num_classes=10, channels=3, image_size=(32, 32),
                       mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
                       class_names=_class_names(folder), augment="crop-flip")
    source: dict[str, Any] = {"root": str(folder), "files": [str(folder / n) for n in names],
                              "verified_record_counts": verify}
    return make_splits_uint8(train, test, info, source, val_size=val_size,
                             default_val_size=DEFAULT_VAL_SIZE, split_seed=split_seed)


PICKLE_FOLDER = "cifar-10-batches-py"  # the python version, as torchvision downloads it


def _pickle_version_hint(root: str | os.PathLike[str] | None) -> str:
    """When a searched root holds the python-pickle version (torchvision's layout), say why it
    is not read and what to fetch instead; '' otherwise."""
    for _label, base in roots.candidate_roots("cifar10", root):
        for folder in (base / PICKLE_FOLDER, base / "cifar10" / PICKLE_FOLDER):
            if folder.is_dir():
                return (f"\nFound {folder}: that is the python-pickle version (torchvision's "
                        f"format), which robustlab does not read, because loading it means "
                        f"unpickling, which can run code. Get the binary version ({ARCHIVE}, "
                        f"the folder {FOLDER}/) from the same page, or pass --download")
    return ""


def read_cifar_binary(path: Path, *, verify: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 3, 32, 32], labels uint8 [N]) from one binary batch file."""
    _check_file_size(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    n, rest = divmod(len(data), RECORD)
    if rest or n == 0:
        raise DataError(f"{path}: truncated or malformed CIFAR-10 binary file: expected a "
                        f"positive multiple of {RECORD} bytes (1 label + 3072 pixel bytes per "
                        f"record), found {len(data)} bytes ({n} records + {rest} bytes)")
    if verify and n != OFFICIAL_RECORDS:
        raise DataError(f"{path}: expected {OFFICIAL_RECORDS} records ({OFFICIAL_RECORDS * RECORD}"
                        f" bytes) as in the official file, found {n} records; pass verify=False "
                        f"to load a reduced copy on purpose")
    records = np.frombuffer(data, dtype=np.uint8).reshape(n, RECORD)
    labels = records[:, 0]
    if int(labels.max()) > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{path}: expected labels in [0, 9], found {int(labels[bad])} in record "
                        f"{bad}")
    return records[:, 1:].reshape(n, 3, 32, 32), labels


def _check_file_size(path: Path) -> None:
    """Refuse, before reading it, a file above `MAX_FILE_BYTES`: it is never loaded whole."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if size > MAX_FILE_BYTES:
        raise DataError(f"{path}: {size} bytes is above the cap of {MAX_FILE_BYTES} bytes for a "
                        f"CIFAR-10 batch file (the official ones hold {OFFICIAL_RECORDS * RECORD})")


def _read_files(paths: list[Path], verify: bool) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_cifar_binary(p, verify=verify) for p in paths]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def _class_names(folder: Path) -> tuple[str, ...]:
    meta = folder / "batches.meta.txt"
    if not meta.is_file():
        return CLASSES
    names = tuple(line.strip() for line in meta.read_text(errors="replace").splitlines()
                  if line.strip())
    if len(names) != 10:
        raise DataError(f"{meta}: expected 10 class names, found {len(names)}")
    return names


def _download(target: Path) -> Path:
    """Fetch the official archive (MD5-verified) and extract its binary folder into `target`."""
    folder = target / FOLDER
    archive = target / ARCHIVE
    if not archive.is_file():
        downloader.download([checksums.CIFAR10_BINARY_URL], archive,
                            md5=checksums.CIFAR10_BINARY_MD5)
    extract_archive(archive, target)
    return folder


def extract_archive(archive: Path, target: Path) -> None:
    """Extract `cifar-10-batches-bin/` from the archive into `target`, safely and atomically
    (`data/archives.py`): only regular files directly inside `cifar-10-batches-bin/` (no links,
    no absolute or `..` paths), read as one stream, a member above `MAX_MEMBER_BYTES` or a
    total above `MAX_EXTRACT_BYTES` refused before it is read."""
    extract_tar(archive, target, ArchiveLayout(
        folder=FOLDER, required=TRAIN_FILES + TEST_FILES, flat=True,
        max_member=MAX_MEMBER_BYTES, max_total=MAX_EXTRACT_BYTES))
