"""Spatial median smoothing (Xu et al. 2018): each pixel becomes the median of its window."""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.common.options import Option
from robustlab.defenses.base import DefenseError, PreprocessingDefense, check_image_batch
from robustlab.registry import DEFENSES


def median_filter(x: Tensor, size: int) -> Tensor:
    """Per-channel median over `size` x `size` windows, reflect padding; `[N, C, H, W]` -> same.

    `size` must be odd (so the window is centred and its median is one of its values) and
    `size // 2` smaller than H and W (reflect padding).
    """
    n, c, h, w = x.shape
    pad = size // 2
    if pad == 0:
        return x
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    windows = F.unfold(padded, kernel_size=size)  # [N, C*size*size, H*W]
    return windows.view(n, c, size * size, h * w).median(dim=2).values.view(n, c, h, w)


@DEFENSES.register("median")
class MedianSmoothing(PreprocessingDefense):
    """`classifier(median_filter(x, size))`.

    The window must be smaller than twice the image side (reflect padding). The median's
    gradient reaches one pixel per window only, so the defense is declared `nondifferentiable`;
    BPDA uses the identity.
    """

    nondifferentiable = True
    OPTIONS: ClassVar[dict[str, Option]] = {
        "size": Option(3, "int", "the window's side in pixels (odd)", low=1),
    }

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        if self.size % 2 == 0:
            raise DefenseError(f"size: expected an odd window size (1, 3, 5, ...), "
                               f"got {self.size}")

    def transform(self, x: Tensor) -> Tensor:
        check_image_batch(self.name, x)
        pad = self.size // 2
        if pad >= min(x.shape[-2:]):
            raise DefenseError(
                f"size: a {self.size}x{self.size} window needs images larger than {pad} pixels "
                f"per side for reflect padding, got {tuple(x.shape[-2:])}"
            )
        return median_filter(x, self.size)
