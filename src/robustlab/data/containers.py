"""The data containers every layer codes against: DatasetInfo, ArraySplit, DatasetSplits.

Images are always float32 tensors of shape [N, C, H, W] with pixel values in [0, 1]; labels are
int64 tensors of shape [N]. Normalisation statistics live in `DatasetInfo` (models apply them as
their first layer); they are never applied to the stored data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from robustlab.common.checks import check_choice, check_int

# Training augmentations a dataset can ask for by default (`DatasetInfo.augment`).
from robustlab.common.vocabulary import AUGMENTATIONS
from robustlab.data.errors import DataError
from robustlab.data.layout import as_nchw


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset.

    Attributes:
        name: registry name, e.g. "mnist".
        num_classes: number of classes K (labels are 0..K-1).
        channels: C, the number of image channels.
        image_size: (H, W) in pixels.
        mean, std: per-channel normalisation statistics (length C), in pixel units of [0, 1].
        class_names: K human-readable class names, index = label.
        augment: the training augmentation of the dataset's standard recipe, used when a run
            asks for `augment = "auto"`: "none", or "crop-flip" (random 4-pixel-padded crop and
            horizontal flip, for natural colour images).
    """

    name: str
    num_classes: int
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    augment: str = "none"

    def __post_init__(self) -> None:
        check_choice("DatasetInfo.augment", self.augment, AUGMENTATIONS, error=DataError)
        for fname in ("mean", "std"):
            value = getattr(self, fname)
            if len(value) != self.channels:
                raise DataError(f"DatasetInfo.{fname}: expected {self.channels} values (one per "
                                f"channel), found {len(value)}: {value!r}")
        if any(s <= 0 for s in self.std):
            raise DataError(f"DatasetInfo.std: expected positive values, found {self.std!r}")
        if len(self.class_names) != self.num_classes:
            raise DataError(f"DatasetInfo.class_names: expected {self.num_classes} names, "
                            f"found {len(self.class_names)}")
        if len(self.image_size) != 2:
            raise DataError(f"DatasetInfo.image_size: expected (H, W), found {self.image_size!r}")

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `robustlab.models.create_model`."""
        return dict(num_classes=self.num_classes, in_channels=self.channels,
                    mean=tuple(self.mean), std=tuple(self.std),
                    image_size=tuple(self.image_size))


@dataclass(frozen=True, eq=False)
class ArraySplit:
    """One split held entirely in memory.

    Attributes:
        x: float32 tensor [N, C, H, W], pixel values in [0, 1], stored with standard NCHW
            strides (`robustlab.data.layout`: a copy is made if they differ).
        y: int64 tensor [N], class indices.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.dtype != torch.float32 \
                or self.x.dim() != 4:
            raise DataError(f"ArraySplit.x: expected a float32 tensor [N, C, H, W], found "
                            f"{_describe(self.x)}")
        object.__setattr__(self, "x", as_nchw(self.x))
        if not isinstance(self.y, torch.Tensor) or self.y.dtype != torch.int64 \
                or self.y.dim() != 1:
            raise DataError(f"ArraySplit.y: expected an int64 tensor [N], found "
                            f"{_describe(self.y)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"ArraySplit: x has {self.x.shape[0]} images but y has "
                            f"{self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def subset(self, n_or_indices: int | Sequence[int] | torch.Tensor) -> ArraySplit:
        """The first `n` examples (an int), the examples at the given indices (in that order), or
        those where a boolean mask of length N is True."""
        if isinstance(n_or_indices, (bool, int)):  # a bool is refused by check_int
            n = check_int("subset n", n_or_indices, 0, len(self), error=DataError)
            return ArraySplit(self.x[:n], self.y[:n])
        idx = torch.as_tensor(n_or_indices)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise DataError(f"subset: a boolean mask must have shape ({len(self)},), found "
                                f"{tuple(idx.shape)}")
            idx = idx.nonzero().flatten()
        if idx.is_floating_point() and idx.numel():
            raise DataError(f"subset: expected integer indices, found {idx.dtype}")
        idx = idx.to(torch.int64)
        if idx.dim() != 1:
            raise DataError(f"subset: expected 1-D indices, found shape {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise DataError(f"subset: indices must be in [0, {len(self)}), found range "
                            f"[{int(idx.min())}, {int(idx.max())}]")
        idx = idx.to(self.x.device)
        return ArraySplit(self.x[idx], self.y[idx])

    def to(self, device: torch.device | str) -> ArraySplit:
        """A copy on `device` (the same object if it is already there)."""
        device = torch.device(device)
        if self.x.device == device:
            return self
        return ArraySplit(self.x.to(device), self.y.to(device))


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """train / val / test splits plus the dataset description and where the data came from.

    `source` is a JSON-friendly dict: at least `root` (the folder used, or None) and `files`
    (the files read), plus how the validation split was carved (`val_size`, `split_seed`).
    """

    train: ArraySplit
    val: ArraySplit
    test: ArraySplit
    info: DatasetInfo
    source: dict[str, Any] = field(default_factory=dict)


def _describe(t: object) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__
