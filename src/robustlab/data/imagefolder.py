"""`imagefolder`: a class-folder image tree (e.g. an ImageNet subset), decoded with Pillow.

Accepted layouts (class = sub-folder name; files *.jpg/*.jpeg/*.png/*.bmp/*.webp):

* ROOT/train/<class>/*, ROOT/val/<class>/* and ROOT/test/<class>/*: the three splits as given;
* ROOT/train/<class>/* and ROOT/val/<class>/*: the ImageNet convention, where the official
  validation set is the held-out evaluation set; it becomes the *test* split and the validation
  split is carved from train (default 10%);
* ROOT/<class>/* (only with an explicit `root=`): a single folder; a test split (`test_size`,
  default 10%) and then a validation split (default 10% of the rest) are carved from it.

Every image is converted to RGB, resized so that it covers image_size (shorter side scaled) and
centre-cropped to exactly image_size. Pixels are stored as float32 in [0, 1]: 224x224 RGB costs
0.6 MB per image, so use `classes=` / `max_per_class=` to keep subsets small.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robustlab.common.options import Option, declare
from robustlab.data import roots
from robustlab.data.containers import DatasetInfo, DatasetSplits
from robustlab.data.errors import DataError
from robustlab.data.splitting import (
    check_split_seed,
    make_splits_uint8,
    resolve_val_size,
    split_indices,
    uint8_to_split,
)
from robustlab.registry import DATASETS

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_VAL_FRACTION = 0.1
TEST_SEED_OFFSET = 1_000_003  # the test carve of a single folder uses split_seed + this
# Most pixels one image may decode to (after JPEG draft scaling): Pillow's own warning limit.
MAX_IMAGE_PIXELS = 89_478_485


@DATASETS.register("imagefolder")
@declare({
    "image_size": Option(224, "size", "S or (H, W): resized to cover it, centre-cropped to it",
                         low=1),
    "classes": Option(None, "names", "class folder names to use, in label order (null: all, "
                      "sorted)", allow_none=True),
    "max_per_class": Option(None, "int", "keep at most this many files per class and split, "
                            "sorted by name (null: all)", low=1, allow_none=True),
    "test_size": Option(DEFAULT_VAL_FRACTION, "amount", "single-folder layout only: test "
                        "examples carved out (int or fraction)"),
    "workers": Option(None, "int", "decoding threads (null: min(8, CPU count)); the result "
                      "does not depend on it", low=1, allow_none=True),
})
def load_imagefolder(root: str | os.PathLike[str] | None = None, *,
                     val_size: int | float | None = None, split_seed: int = 0,
                     download: bool = False, image_size: int | tuple[int, int],
                     classes: list[str] | tuple[str, ...] | None, max_per_class: int | None,
                     test_size: int | float, workers: int | None) -> DatasetSplits:
    """Images from class folders, resized + centre-cropped to `image_size` (S or (H, W)); the
    options are declared above and checked by `load_dataset`."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    check_split_seed(split_seed)
    if download:
        raise DataError("imagefolder: download=True is not supported (there is no official "
                        "mirror for an arbitrary image folder); place the files locally")
    base = _find_root(root)
    split_dirs, files, class_names = _list_layout(base, classes, max_per_class)
    single = not split_dirs
    info = DatasetInfo(name="imagefolder", num_classes=len(class_names), channels=3,
                       image_size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       class_names=tuple(class_names), augment="crop-flip")
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    arrays = {split: _decode_all(items, size, workers) for split, items in files.items()}
    layout = "single folder" if single else "+".join(sorted(split_dirs))
    source: dict[str, Any] = {
        "root": str(base), "layout": layout,
        "files": [str(split_dirs.get(s, base)) for s in files],
        "num_images": {s: len(v) for s, v in files.items()}, "image_size": list(size)}
    if "val" in arrays and "test" in arrays:
        if val_size is not None:
            raise DataError(f"imagefolder val_size: {base} has a val/ folder and a test/ folder, "
                            f"so the val split is that folder; expected val_size=None, found "
                            f"{val_size!r}")
        return DatasetSplits(train=uint8_to_split(*arrays["train"]),
                             val=uint8_to_split(*arrays["val"]),
                             test=uint8_to_split(*arrays["test"]), info=info,
                             source={**source, "val_from": "val folder",
                                     "test_from": "test folder"})
    if "val" in arrays:  # ImageNet convention: official val = held-out test set
        test, source["test_from"] = arrays["val"], "val folder"
        train = arrays["train"]
    else:
        train, test = _carve_test(arrays["train"], test_size, split_seed)
        source["test_from"] = f"carved from the single folder (test_size={test_size!r})"
    return make_splits_uint8(train, test, info, source, val_size=val_size,
                             default_val_size=DEFAULT_VAL_FRACTION, split_seed=split_seed)


def _list_layout(base: Path, classes: Any, max_per_class: int | None
                 ) -> tuple[dict[str, Path], dict[str, Any], list[str]]:
    """(split folders, files per split, class names) of `base`: train/ (+ val/, test/), or a
    single folder whose every sub-folder is a class, even one named val/ or test/ (then the
    split folders are `{}`). val/ and test/ must hold train/'s class folders (labels come from
    train/'s); every class folder used must hold images."""
    split_dirs = {s: base / s for s in ("train", "val", "test") if (base / s).is_dir()}
    if "train" not in split_dirs:
        split_dirs = {}
    train_dir = split_dirs.get("train", base)
    class_names = _select_classes(train_dir, classes)
    files = {"train": _list_files(train_dir, class_names, max_per_class)}
    for split in ("val", "test"):
        if split in split_dirs:
            _check_same_classes(split_dirs[split], train_dir, class_names)
            files[split] = _list_files(split_dirs[split], class_names, max_per_class)
    return split_dirs, files, class_names


def _find_root(root: Any) -> Path:
    if root is not None:
        base = Path(root).expanduser()
        if not base.is_dir():
            raise roots.not_found("imagefolder", "a folder with train/<class>/ (and val/) or "
                                  "<class>/ sub-folders", [f"{base}  (root= / --data-dir)"],
                                  downloadable=False)
        return base
    folder, searched = roots.locate("imagefolder", None, subdirs=("imagefolder", "imagenet"),
                                    is_complete=lambda d: (d / "train").is_dir())
    if folder is None:
        raise roots.not_found("imagefolder", "a folder with train/<class>/ sub-folders",
                              searched, downloadable=False)
    return folder


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")


def _class_dirs(folder: Path) -> list[str]:
    """The names of `folder`'s sub-folders (hidden ones aside), sorted."""
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _check_not_empty(folder: Path, names: list[str]) -> None:
    """Refuse class folders without images: dropping one would silently renumber the labels of
    the classes after it."""
    empty = [n for n in names if not any(_is_image(p) for p in (folder / n).iterdir())]
    if empty:
        raise DataError(f"{folder}: class folder(s) {', '.join(empty)} hold no images; expected "
                        f"images ({', '.join(EXTENSIONS)}) in every class folder (remove it, "
                        f"or choose classes with classes=)")


def _select_classes(folder: Path, classes: Any) -> list[str]:
    present = _class_dirs(folder)
    if not any(any(_is_image(p) for p in (folder / n).iterdir()) for n in present):
        raise DataError(f"{folder}: expected class sub-folders holding images "
                        f"({', '.join(EXTENSIONS)}), found none")
    if classes is None:
        selected = present
    else:
        missing = [c for c in classes if c not in present]
        if missing or len(set(classes)) != len(classes) or len(classes) < 1:
            raise DataError(f"imagefolder classes: expected distinct names among the class "
                            f"folders of {folder} ({', '.join(present)}), found "
                            f"{list(classes)!r}"
                            + (f" (missing: {', '.join(missing)})" if missing else ""))
        selected = list(classes)
    _check_not_empty(folder, selected)
    if len(selected) < 2:
        raise DataError(f"{folder}: expected at least 2 classes, found {len(selected)} "
                        f"({', '.join(selected)}); a classifier needs two")
    return selected


def _check_same_classes(folder: Path, train_dir: Path, class_names: list[str]) -> None:
    """`folder` (val/ or test/) must hold a folder for each class used and no class folder that
    train/ lacks: its labels are train/'s, so a renamed folder would mislabel images."""
    present = _class_dirs(folder)
    missing = [c for c in class_names if c not in present]
    known = set(_class_dirs(train_dir))
    extra = [c for c in present if c not in known]
    if missing or extra:
        found = "; ".join(part for part in (
            f"missing: {', '.join(missing)}" if missing else "",
            f"not in {train_dir.name}/: {', '.join(extra)}" if extra else "") if part)
        raise DataError(f"{folder}: expected the class folders of {train_dir} "
                        f"({', '.join(class_names)}), found {found}")
    _check_not_empty(folder, class_names)


def _list_files(folder: Path, class_names: list[str], max_per_class: int | None
                ) -> list[tuple[Path, int]]:
    out: list[tuple[Path, int]] = []
    for label, name in enumerate(class_names):
        if not (folder / name).is_dir():
            raise DataError(f"{folder}: expected a class folder {name!r}, found none")
        paths = sorted(p for p in (folder / name).iterdir() if _is_image(p))
        out += [(p, label) for p in paths[:max_per_class]]
    return out


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 [3, H, W]: RGB, shorter side scaled to cover `size`, centre crop."""
    h, w = size
    try:
        with Image.open(path) as img:
            img.draft("RGB", (w, h))  # JPEG: decode at a reduced scale >= the target size
            _check_pixels(path, img)
            img = img.convert("RGB")
            scale = max(h / img.height, w / img.width)
            new_w, new_h = max(w, round(img.width * scale)), max(h, round(img.height * scale))
            img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
            left, top = (new_w - w) // 2, (new_h - h) // 2
            img = img.crop((left, top, left + w, top + h))
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except DataError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: expected an image Pillow can decode, found an error: "
                        f"{exc}") from exc


def _check_pixels(path: Path, img: Image.Image) -> None:
    """Refuse, before decoding, an image whose decoded size exceeds `MAX_IMAGE_PIXELS` (Pillow
    itself only warns up to twice its limit and decodes anyway)."""
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: {img.width}x{img.height} = {img.width * img.height} pixels to "
                        f"decode, above the cap of {MAX_IMAGE_PIXELS} pixels; expected a "
                        "smaller image (a decompression bomb?)")


def _decode_all(items: list[tuple[Path, int]], size: tuple[int, int], workers: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Decode into one preallocated uint8 array; threads (Pillow releases the GIL while
    decoding) write disjoint slots, so the result does not depend on `workers`."""
    images = np.empty((len(items), 3, *size), dtype=np.uint8)

    def work(i: int) -> None:
        images[i] = load_image(items[i][0], size)

    if workers <= 1 or len(items) < 2:
        for i in range(len(items)):
            work(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(work, range(len(items))))
    return images, np.array([label for _, label in items], dtype=np.int64)


def _carve_test(train: tuple[np.ndarray, np.ndarray], test_size: int | float, split_seed: int
                ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    images, labels = train
    n_test = resolve_val_size(test_size, DEFAULT_VAL_FRACTION, len(labels), "imagefolder",
                              field="test_size")
    if n_test == 0:
        raise DataError("imagefolder test_size: the single-folder layout needs a test split; "
                        "expected test_size > 0, found 0")
    rest, test = split_indices(len(labels), n_test, split_seed + TEST_SEED_OFFSET)
    r, t = rest.numpy(), test.numpy()
    return (images[r], labels[r]), (images[t], labels[t])

