"""Tiny-ImageNet (CS231n) from its official folder `tiny-imagenet-200/`, decoded with Pillow.

Layout: `wnids.txt` (the 200 WordNet ids, one per line), `words.txt` (wnid TAB names),
`train/<wnid>/images/*.JPEG` (500 per class), `val/images/*.JPEG` with
`val/val_annotations.txt` (file TAB wnid TAB box: 10,000 images, 50 per class) and `test/`
(10,000 images without labels). As in the literature, the labelled val set is the **test**
split and robustlab's validation split is carved from train. Labels follow the sorted wnids
(the order of a class-folder loader over `train/`); class names are the first name of each
wnid in `words.txt`. Images are 64x64 (a few are grayscale and are converted to RGB); they are
decoded on every load (no cache), by threads writing into one preallocated array.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robustlab.common.options import Option, declare
from robustlab.data import checksums, roots
from robustlab.data import download as downloader
from robustlab.data.archives import ArchiveLayout, extract_zip
from robustlab.data.containers import DatasetInfo, DatasetSplits
from robustlab.data.errors import DataError
from robustlab.data.splitting import make_splits_uint8
from robustlab.registry import DATASETS

FOLDER = "tiny-imagenet-200"
ARCHIVE = "tiny-imagenet-200.zip"
SIZE = 64
OFFICIAL = {"classes": 200, "train_per_class": 500, "val": 10000}
DEFAULT_VAL_SIZE = 5000
MEAN = (0.4802, 0.4481, 0.3975)
STD = (0.2770, 0.2691, 0.2821)
# Caps on what the download extracts: one member (the largest, words.txt, is 2.7 MB) and in all
# (the official train/ and val/ hold about 230 MB of JPEGs); test/ (no labels) is left out.
LAYOUT = ArchiveLayout(folder=FOLDER, flat=False, skip=("test",),
                       required=("wnids.txt", "words.txt", "val/val_annotations.txt"),
                       max_member=64 << 20, max_total=2 << 30)
MAX_TEXT_BYTES = 64 << 20  # wnids.txt, words.txt, val_annotations.txt


@DATASETS.register("tiny-imagenet")
@declare({
    "verify": Option(True, "bool", "require the official 200 classes, 500 training images per "
                     "class and 10,000 val images (false: any counts, e.g. a reduced copy)"),
    "max_per_class": Option(None, "int", "keep at most this many training images per class, "
                            "sorted by name (null: all)", low=1, allow_none=True),
    "workers": Option(None, "int", "decoding threads (null: min(8, CPU count)); the result "
                      "does not depend on it", low=1, allow_none=True),
})
def load_tiny_imagenet(root: str | os.PathLike[str] | None = None, *,
                       val_size: int | float | None = None, split_seed: int = 0,
                       download: bool = False, verify: bool, max_per_class: int | None,
                       workers: int | None) -> DatasetSplits:
    """Tiny-ImageNet: 100,000 train (minus `val_size`, default 5,000) / 10,000 test (the
    official val set), 3x64x64, 200 classes."""
    folder, searched = roots.locate(
        "tiny-imagenet", root, subdirs=(f"tiny-imagenet/{FOLDER}", FOLDER, "tiny-imagenet"),
        is_complete=_is_complete)
    if folder is None:
        if not download:
            raise roots.not_found("tiny-imagenet", f"the folder {FOLDER}/ (wnids.txt, train/, "
                                  f"val/val_annotations.txt) from {ARCHIVE}", searched)
        folder = _download(roots.download_dir("tiny-imagenet", root))
    wnids = read_wnids(folder / "wnids.txt", verify)
    train_items = _train_items(folder, wnids, verify)
    if max_per_class is not None:
        train_items = _first_per_class(train_items, max_per_class)
    test_items = _val_items(folder, wnids, verify)
    threads = min(8, os.cpu_count() or 1) if workers is None else workers
    info = DatasetInfo(name="tiny-imagenet", num_classes=len(wnids), channels=3,
                       image_size=(SIZE, SIZE), mean=MEAN, std=STD,
                       class_names=_class_names(folder / "words.txt", wnids),
                       augment="crop-flip")
    source: dict[str, Any] = {
        "root": str(folder), "files": [str(folder / "train"), str(folder / "val")],
        "test_from": "val/ (the official test/ has no labels)", "verified_counts": verify,
        "num_images": {"train": len(train_items), "test": len(test_items)}}
    return make_splits_uint8(decode_all(train_items, threads), decode_all(test_items, threads),
                             info, source, val_size=val_size,
                             default_val_size=DEFAULT_VAL_SIZE, split_seed=split_seed)


def _is_complete(folder: Path) -> bool:
    return ((folder / "wnids.txt").is_file() and (folder / "train").is_dir()
            and (folder / "val" / "val_annotations.txt").is_file())


def _read_lines(path: Path) -> list[str]:
    """The file's non-empty lines (right-stripped), refused above `MAX_TEXT_BYTES`."""
    try:
        if path.stat().st_size > MAX_TEXT_BYTES:
            raise DataError(f"{path}: above the cap of {MAX_TEXT_BYTES} bytes for a "
                            f"Tiny-ImageNet text file")
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def read_wnids(path: Path, verify: bool) -> list[str]:
    """The class ids of `wnids.txt`, sorted (the labels' order)."""
    wnids = [line.strip() for line in _read_lines(path)]
    bad = [w for w in wnids if not w or "/" in w or w.startswith(".") or len(w.split()) != 1]
    if bad or len(set(wnids)) != len(wnids) or len(wnids) < 2:
        raise DataError(f"{path}: expected distinct WordNet ids (e.g. n01443537), one per line, "
                        f"at least 2, found {len(wnids)} lines"
                        + (f", e.g. {bad[0]!r}" if bad else " (some repeated)" if wnids else ""))
    if verify and len(wnids) != OFFICIAL["classes"]:
        raise DataError(f"{path}: expected {OFFICIAL['classes']} class ids as in the official "
                        f"file, found {len(wnids)}; pass verify=False to load a reduced copy on "
                        f"purpose")
    return sorted(wnids)


def _class_names(path: Path, wnids: list[str]) -> tuple[str, ...]:
    """Each wnid's first name in `words.txt` (the wnid itself where the file or entry lacks)."""
    names: dict[str, str] = {}
    if path.is_file():
        for line in _read_lines(path):
            wnid, _, words = line.partition("\t")
            names[wnid.strip()] = words.split(",")[0].strip()
    return tuple(names.get(w) or w for w in wnids)


def _train_items(folder: Path, wnids: list[str], verify: bool) -> list[tuple[Path, int]]:
    items: list[tuple[Path, int]] = []
    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        if not images.is_dir():
            raise DataError(f"{images}: expected the training images of class {wnid} (listed "
                            f"in wnids.txt), found no such folder")
        files = sorted(p for p in images.iterdir() if p.suffix.lower() == ".jpeg"
                       and p.is_file() and not p.name.startswith("."))
        if not files or (verify and len(files) != OFFICIAL["train_per_class"]):
            want = OFFICIAL["train_per_class"] if verify else "at least 1"
            raise DataError(f"{images}: expected {want} .JPEG images, found {len(files)}"
                            + ("; pass verify=False to load a reduced copy on purpose"
                               if verify and files else ""))
        items += [(p, label) for p in files]
    return items


def _first_per_class(items: list[tuple[Path, int]], cap: int) -> list[tuple[Path, int]]:
    kept: dict[int, int] = {}
    out = []
    for path, label in items:
        kept[label] = kept.get(label, 0) + 1
        if kept[label] <= cap:
            out.append((path, label))
    return out


def _val_items(folder: Path, wnids: list[str], verify: bool) -> list[tuple[Path, int]]:
    """The labelled val images, in the order of `val_annotations.txt`."""
    path = folder / "val" / "val_annotations.txt"
    index = {w: i for i, w in enumerate(wnids)}
    items = []
    for number, line in enumerate(_read_lines(path), 1):
        fields = line.split("\t")
        name, wnid = (fields[0].strip(), fields[1].strip()) if len(fields) >= 2 else ("", "")
        if wnid not in index or not name or "/" in name or name.startswith("."):
            raise DataError(f"{path}: line {number}: expected 'FILE<TAB>WNID<TAB>box' with a "
                            f"wnid of wnids.txt, found {line[:80]!r}")
        image = folder / "val" / "images" / name
        if not image.is_file():
            raise DataError(f"{path}: line {number} names {image}, which does not exist; "
                            f"expected every annotated val image")
        items.append((image, index[wnid]))
    if not items or (verify and len(items) != OFFICIAL["val"]):
        want = OFFICIAL["val"] if verify else "at least 1"
        raise DataError(f"{path}: expected {want} annotated images, found {len(items)}"
                        + ("; pass verify=False to load a reduced copy on purpose"
                           if verify and items else ""))
    return items


def load_image(path: Path) -> np.ndarray:
    """uint8 [3, 64, 64] RGB; an image of another size is refused before it is decoded."""
    try:
        with Image.open(path) as img:
            if img.size != (SIZE, SIZE):
                raise DataError(f"{path}: expected a {SIZE}x{SIZE} Tiny-ImageNet image, found "
                                f"{img.size[0]}x{img.size[1]}")
            return np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    except DataError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: expected a JPEG image Pillow can decode, found an error: "
                        f"{exc}") from exc


def decode_all(items: list[tuple[Path, int]], workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode into one preallocated uint8 array; threads (Pillow releases the GIL while
    decoding) write disjoint slots, so the result does not depend on `workers`."""
    images = np.empty((len(items), 3, SIZE, SIZE), dtype=np.uint8)

    def work(i: int) -> None:
        images[i] = load_image(items[i][0])

    if workers <= 1 or len(items) < 2:
        for i in range(len(items)):
            work(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(len(items))))
    return images, np.array([label for _, label in items], dtype=np.int64)


def _download(target: Path) -> Path:
    """Fetch the official zip (MD5-verified) and extract train/, val/ and the lists."""
    archive = target / ARCHIVE
    if not archive.is_file():
        downloader.download([checksums.TINY_IMAGENET_URL], archive,
                            md5=checksums.TINY_IMAGENET_MD5)
    return extract_zip(archive, target, LAYOUT)
