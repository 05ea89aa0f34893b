"""Your own data as robustlab splits: tensors, numpy arrays or a DataLoader -> `DatasetSplits`.

`robustlab.train(model, (x, y), ...)` calls `splits_from_data`. Everything is materialised in
memory once: the training loop draws its own shuffled, seeded batches from tensors, which is
what makes a run reproducible and resumable after a kill (a DataLoader's worker order is not).
Data that does not fit in memory is not supported by this path; register a dataset instead
(docs/plugins.md).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
from typing import Any

import torch

from robustlab.common.checks import check_int
from robustlab.data.containers import ArraySplit, DatasetInfo, DatasetSplits
from robustlab.data.errors import DataError
from robustlab.data.layout import as_nchw
from robustlab.data.splitting import carve_val, resolve_val_size

CUSTOM = "custom"  # the dataset name recorded for data passed from Python
DEFAULT_VAL_FRACTION = 0.1  # carved from the training data when no validation data is given
CHANNEL_COUNTS = (1, 3)  # grey and RGB: what a last dimension of NHWC images may hold


def as_split(data: Any, field: str) -> ArraySplit:
    """One split from `(x, y)` (tensors or numpy arrays), an `ArraySplit`, or an iterable of
    `(x, y)` batches such as a `torch.utils.data.DataLoader`. Images: float `[N, C, H, W]` in
    [0, 1] (float64/half become float32); labels: integer `[N]`."""
    if isinstance(data, ArraySplit):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _is_batch_list(data):
        x, y = data
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, torch.Tensor)):
        x, y = _concat_batches(data, field)
    else:
        raise DataError(f"{field}: expected (x, y) tensors or numpy arrays, or a DataLoader of "
                        f"(x, y) batches; got a {type(data).__name__}")
    return ArraySplit(_images(x, field), _labels(y, field, len(x)))


def splits_from_data(train: Any, val: Any = None, test: Any = None, *,
                     num_classes: int | None = None, val_size: int | float | None = None,
                     split_seed: int = 0) -> DatasetSplits:
    """`DatasetSplits` named "custom" from your data. With no `val`, `val_size` images (count or
    fraction; default 10 %) are carved from `train` with `split_seed`; with no `test`, the test
    split is empty (the run's summary then has no test accuracy). `num_classes` defaults to the
    largest label + 1."""
    tr = as_split(train, "train")
    source: dict[str, Any] = {"root": None, "files": [], "origin": "python"}
    if val is None:
        n_val = resolve_val_size(val_size, DEFAULT_VAL_FRACTION, len(tr), CUSTOM)
        tr, va, meta = carve_val(tr, n_val, split_seed)
        source.update(meta)
    else:
        va = as_split(val, "val")
    te = as_split(test, "test") if test is not None else tr.subset(0)
    info = _info(tr, (va, te), num_classes)
    for name, split in (("val", va), ("test", te)):
        if len(split) and tuple(split.x.shape[1:]) != tuple(tr.x.shape[1:]):
            raise DataError(f"{name}: images of shape {tuple(split.x.shape[1:])}, but the "
                            f"training images are {tuple(tr.x.shape[1:])}")
    return DatasetSplits(tr, va, te, info, source)


def _info(train: ArraySplit, others: tuple[ArraySplit, ...], num_classes: int | None
          ) -> DatasetInfo:
    if len(train) == 0:
        raise DataError("train: no training images")
    top = max(int(s.y.max()) for s in (train, *others) if len(s)) + 1
    num_classes = top if num_classes is None else check_int(
        "num_classes", num_classes, low=top, error=DataError)  # >= the largest label + 1
    channels = train.x.shape[1]
    dims = (0, 2, 3)
    # Statistics for robustlab's registered models, which normalise inside; a model of your
    # own takes [0, 1] images and does whatever it does.
    mean = tuple(float(v) for v in train.x.mean(dims))
    std = tuple(max(float(v), 1e-3) for v in train.x.std(dims))
    return DatasetInfo(name=CUSTOM, num_classes=num_classes, channels=channels,
                       image_size=(train.x.shape[2], train.x.shape[3]), mean=mean, std=std,
                       class_names=tuple(str(k) for k in range(num_classes)))


def _is_batch_list(data: tuple | list) -> bool:
    """A list of two (x, y) batches is a loader, not an (x, y) pair."""
    return all(isinstance(b, (tuple, list)) and len(b) == 2 for b in data)


def _concat_batches(batches: Iterable, field: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)):
            raise DataError(f"{field}: batch {i} is a {type(batch).__name__}; expected "
                            "(x, y) pairs")
        if len(batch) != 2:  # a third item (an index, a weight, a mask) would be dropped
            raise DataError(f"{field}: expected (x, y) batches, got {len(batch)} items in "
                            f"batch {i}")
        xs.append(_tensor(batch[0], f"{field} batch {i} x"))
        ys.append(_tensor(batch[1], f"{field} batch {i} y"))
        if xs[i].shape[1:] != xs[0].shape[1:]:
            raise DataError(f"{field} batch {i} x: images of shape {tuple(xs[i].shape[1:])}, "
                            f"but batch 0's are {tuple(xs[0].shape[1:])}; expected one "
                            "image shape")
    if not xs:
        raise DataError(f"{field}: the loader yielded no batches")
    return torch.cat(xs), torch.cat(ys)


def _tensor(value: Any, field: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if type(value).__module__ == "numpy":
        return torch.from_numpy(value)
    raise DataError(f"{field}: expected a torch tensor or numpy array, got a "
                    f"{type(value).__name__}")


def _images(x: Any, field: str) -> torch.Tensor:
    x = _tensor(x, f"{field} x")
    if not x.is_floating_point():
        raise DataError(f"{field} x: expected float images in [0, 1], got {x.dtype}; divide "
                        "0-255 images by 255")
    if x.dim() != 4:
        raise DataError(f"{field} x: expected images [N, C, H, W], got shape {tuple(x.shape)}")
    x = _channels_first(x, field)
    # One stride layout whatever the source (robustlab.data.layout): conv kernels pick their
    # algorithm, hence rounding, by it. A copy, so the caller's tensor is never aliased.
    x = as_nchw(x.float().clone())
    bad = int((~torch.isfinite(x)).sum())
    if bad:  # NaN compares False with everything: the range check below would let it pass
        raise DataError(f"{field} x: {bad} non-finite pixel value(s) (NaN or inf) in "
                        f"{len(x)} images; expected finite values in [0, 1]")
    if len(x) and (x.min() < 0 or x.max() > 1):
        raise DataError(f"{field} x: expected pixel values in [0, 1], found "
                        f"[{x.min():.3g}, {x.max():.3g}]; pass unnormalised images (put the "
                        "normalisation inside the model)")
    return x


def _channels_first(x: torch.Tensor, field: str) -> torch.Tensor:
    """NHWC images (numpy / TensorFlow's layout) as NCHW, with a note on stderr. Only when the
    layout is unambiguous: the last dimension 1 or 3 (grey / RGB channels) and dimension 1 not
    (28 is no channel count robustlab's data has). `[N, 3, 32, 3]` or `[N, 1, 28, 28]` stay as
    given: NCHW is the documented layout."""
    if x.shape[-1] not in CHANNEL_COUNTS or x.shape[1] in CHANNEL_COUNTS:
        return x
    nchw = x.permute(0, 3, 1, 2)
    print(f"note: {field} x: images of shape {list(x.shape)} read as channels-last "
          f"[N, H, W, C] and transposed to [N, C, H, W] = {list(nchw.shape)}", file=sys.stderr)
    return nchw


def fingerprint(splits: DatasetSplits) -> str:
    """SHA-256 of the train / val / test tensors as trained on (each split's name, then for x
    and y: dtype, shape and bytes): the same images and labels give the same fingerprint
    whatever their source (tensors, numpy, a DataLoader)."""
    digest = hashlib.sha256()
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        for part, t in (("x", split.x), ("y", split.y)):
            t = t.detach().cpu().contiguous()
            digest.update(f"{name}.{part} {t.dtype} {list(t.shape)}\n".encode())
            digest.update(t.view(torch.uint8).numpy())  # the buffer itself, no copy
    return "sha256:" + digest.hexdigest()


def _labels(y: Any, field: str, n: int) -> torch.Tensor:
    y = _tensor(y, f"{field} y")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(f"{field} y: expected integer class labels, got {y.dtype}")
    if y.dim() != 1 or len(y) != n:
        raise DataError(f"{field} y: expected shape [{n}] (one label per image), got "
                        f"{tuple(y.shape)}")
    if len(y) and y.min() < 0:
        raise DataError(f"{field} y: labels must be >= 0, found {int(y.min())}")
    return y.long().contiguous()
