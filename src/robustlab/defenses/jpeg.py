"""JPEG compression (Dziugaite et al. 2016; Guo et al. 2018): encode + decode every image."""

from __future__ import annotations

import io
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from robustlab.common.options import Option
from robustlab.defenses.base import DefenseError, PreprocessingDefense, check_image_batch
from robustlab.registry import DEFENSES

_PIL_MODES = {1: "L", 3: "RGB"}


def _require_pillow():
    try:
        from PIL import Image
    except ImportError:
        raise DefenseError(
            "jpeg: this defense needs Pillow (pip install pillow, or reinstall robustlab, which "
            "depends on it); it is not importable in this environment"
        ) from None
    return Image


def jpeg_roundtrip(x: Tensor, quality: int) -> Tensor:
    """Each image of `x` `[N, C, H, W]` (C = 1 or 3, values in [0, 1]) JPEG-encoded at `quality`
    and decoded again, on CPU through Pillow; returns the same shape, dtype and device, with
    values that are multiples of 1/255."""
    image_mod = _require_pillow()
    if x.shape[1] not in _PIL_MODES:
        raise DefenseError(
            f"jpeg: expected 1 (grey) or 3 (RGB) channels, got {x.shape[1]} in {tuple(x.shape)}"
        )
    mode = _PIL_MODES[x.shape[1]]
    pixels = (x.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()  # [N, H, W, C]
    out = np.empty_like(pixels)
    for i, img in enumerate(pixels):
        buf = io.BytesIO()
        image_mod.fromarray(img[..., 0] if mode == "L" else img, mode=mode).save(
            buf, format="JPEG", quality=quality
        )
        buf.seek(0)
        decoded = np.asarray(image_mod.open(buf).convert(mode))
        out[i] = decoded[..., None] if mode == "L" else decoded
    result = torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)
    return result.div_(255.0).contiguous()


@DEFENSES.register("jpeg")
class JpegCompression(PreprocessingDefense):
    """`classifier(jpeg_decode(jpeg_encode(x, quality)))` (Pillow; 1- or 3-channel images).

    The round trip runs on CPU outside autograd, so the defense is `nondifferentiable`; BPDA
    uses the identity.
    """

    nondifferentiable = True
    OPTIONS: ClassVar[dict[str, Option]] = {
        "quality": Option(75, "int", "JPEG quality (75: Pillow's default)", low=1, high=100),
    }

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__(model, **options)
        _require_pillow()  # fail at construction, before any compute

    def transform(self, x: Tensor) -> Tensor:
        check_image_batch(self.name, x)
        return jpeg_roundtrip(x, self.quality)
