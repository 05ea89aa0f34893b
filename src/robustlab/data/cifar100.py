"""CIFAR-100 from the official binary version (`cifar-100-binary`).

Each file is a sequence of 3,074-byte records: 1 coarse label byte (0-19), 1 fine label byte
(0-99), then 3,072 pixel bytes (the 1,024 red, then green, then blue values of a 32x32 image,
rows in order). `train.bin` holds 50,000 records, `test.bin` 10,000; `fine_label_names.txt` and
`coarse_label_names.txt` the class names. Labels are the 100 fine classes, or with
`labels="coarse"` the 20 superclasses. As for CIFAR-10, the python version
(`cifar-100-python`) is not read: its arrays are pickled numpy objects, which only an
unpickler that imports code could load, and we do not unpickle code.
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

PIXELS = 3 * 32 * 32
RECORD = 2 + PIXELS
FOLDER = "cifar-100-binary"
ARCHIVE = "cifar-100-binary.tar.gz"
PICKLE_FOLDER = "cifar-100-python"  # the python version, as torchvision downloads it
OFFICIAL_RECORDS = {"train.bin": 50000, "test.bin": 10000}
NAME_FILES = {"fine": "fine_label_names.txt", "coarse": "coarse_label_names.txt"}
NUM_CLASSES = {"coarse": 20, "fine": 100}
LABEL_BYTE = {"coarse": 0, "fine": 1}
# Caps, in bytes: one file read (the official train.bin is 153.7 MB), one archive member and
# the whole extracted archive (the official one expands to 184 MB).
MAX_FILE_BYTES = 4 * OFFICIAL_RECORDS["train.bin"] * RECORD
MAX_EXTRACT_BYTES = 1 << 30
DEFAULT_VAL_SIZE = 5000
MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)
LAYOUT = ArchiveLayout(folder=FOLDER, required=tuple(OFFICIAL_RECORDS), flat=True,
                       max_member=MAX_FILE_BYTES, max_total=MAX_EXTRACT_BYTES)


@DATASETS.register("cifar100")
@declare({
    "labels": Option("fine", "choice", "fine: the 100 classes; coarse: the 20 superclasses",
                     choices=("fine", "coarse")),
    "verify": Option(True, "bool", "require the official 50,000 / 10,000 records (false: any "
                     "whole number of records, e.g. a reduced copy)"),
})
def load_cifar100(root: str | os.PathLike[str] | None = None, *,
                  val_size: int | float | None = None, split_seed: int = 0,
                  download: bool = False, labels: str, verify: bool) -> DatasetSplits:
    """CIFAR-100: 50,000 train (minus `val_size`, default 5,000) / 10,000 test, 3x32x32,
    labelled with the 100 fine classes (`labels="coarse"`: the 20 superclasses)."""
    names = tuple(OFFICIAL_RECORDS)
    folder, searched = roots.locate(
        "cifar100", root, subdirs=(f"cifar100/{FOLDER}", FOLDER, "cifar100", "cifar-100"),
        is_complete=lambda d: all((d / n).is_file() for n in names))
    if folder is None:
        if not download:
            err = roots.not_found("cifar100", f"the binary files {', '.join(names)} (the "
                                  f"folder {FOLDER}/ from {ARCHIVE})", searched)
            raise DataError(str(err) + _pickle_version_hint(root)) from None
        folder = _download(roots.download_dir("cifar100", root))
    train = read_cifar100_binary(folder / "train.bin", labels=labels, verify=verify)
    test = read_cifar100_binary(folder / "test.bin", labels=labels, verify=verify)
    info = DatasetInfo(name="cifar100", num_classes=NUM_CLASSES[labels], channels=3,
                       image_size=(32, 32), mean=MEAN, std=STD,
                       class_names=_class_names(folder, labels), augment="crop-flip")
    source: dict[str, Any] = {"root": str(folder), "files": [str(folder / n) for n in names],
                              "labels": labels, "verified_record_counts": verify}
    return make_splits_uint8(train, test, info, source, val_size=val_size,
                             default_val_size=DEFAULT_VAL_SIZE, split_seed=split_seed)


def _pickle_version_hint(root: str | os.PathLike[str] | None) -> str:
    """When a searched root holds the python-pickle version, say why it is not read and what to
    fetch instead; '' otherwise."""
    for _label, base in roots.candidate_roots("cifar100", root):
        for folder in (base / PICKLE_FOLDER, base / "cifar100" / PICKLE_FOLDER):
            if folder.is_dir():
                return (f"\nFound {folder}: that is the python-pickle version (torchvision's "
                        f"format), which robustlab does not read, because loading it means "
                        f"unpickling, which can run code. Get the binary version ({ARCHIVE}, "
                        f"the folder {FOLDER}/) from the same page, or pass --download")
    return ""


def read_cifar100_binary(path: Path, *, labels: str = "fine", verify: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 3, 32, 32], labels uint8 [N]) from `train.bin` or `test.bin`;
    `labels` picks the fine (0-99) or the coarse (0-19) label byte."""
    data = _read_capped(path)
    n, rest = divmod(len(data), RECORD)
    if rest or n == 0:
        raise DataError(f"{path}: truncated or malformed CIFAR-100 binary file: expected a "
                        f"positive multiple of {RECORD} bytes (1 coarse + 1 fine label + "
                        f"{PIXELS} pixel bytes per record), found {len(data)} bytes ({n} "
                        f"records + {rest} bytes)")
    official = OFFICIAL_RECORDS.get(path.name)
    if verify and n != official:
        raise DataError(f"{path}: expected {official} records ({official * RECORD} bytes) as in "
                        f"the official file, found {n} records; pass verify=False to load a "
                        f"reduced copy on purpose")
    records = np.frombuffer(data, dtype=np.uint8).reshape(n, RECORD)
    for kind in ("coarse", "fine"):  # both bytes are checked, whichever is used
        column = records[:, LABEL_BYTE[kind]]
        if int(column.max()) >= NUM_CLASSES[kind]:
            bad = int(np.argmax(column >= NUM_CLASSES[kind]))
            raise DataError(f"{path}: expected {kind} labels in [0, {NUM_CLASSES[kind] - 1}], "
                            f"found {int(column[bad])} in record {bad}")
    return records[:, 2:].reshape(n, 3, 32, 32), records[:, LABEL_BYTE[labels]]


def _read_capped(path: Path) -> bytes:
    """The file's bytes; refused before reading above `MAX_FILE_BYTES`."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataError(f"{path}: {size} bytes is above the cap of {MAX_FILE_BYTES} bytes "
                            f"for a CIFAR-100 file (the official train.bin holds "
                            f"{OFFICIAL_RECORDS['train.bin'] * RECORD})")
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _class_names(folder: Path, labels: str) -> tuple[str, ...]:
    """The names in `fine_label_names.txt` / `coarse_label_names.txt`, or numbers when the
    file is absent."""
    path = folder / NAME_FILES[labels]
    count = NUM_CLASSES[labels]
    if not path.is_file():
        return tuple(str(i) for i in range(count))
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != count:
        raise DataError(f"{path}: expected {count} class names, one per line, found "
                        f"{len(names)}")
    return names


def _download(target: Path) -> Path:
    """Fetch the official archive (MD5-verified) and extract its binary folder into `target`."""
    archive = target / ARCHIVE
    if not archive.is_file():
        downloader.download([checksums.CIFAR100_BINARY_URL], archive,
                            md5=checksums.CIFAR100_BINARY_MD5)
    return extract_tar(archive, target, LAYOUT)
