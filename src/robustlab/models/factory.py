"""`create_model` / `list_models`: build any registered model by name."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..registry import MODELS

_COMMON = ("num_classes", "in_channels", "mean", "std", "image_size")


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int | tuple[int, int],
    **options: Any,
) -> nn.Module:
    """Build model `name` (see `list_models()`), taking pixel-space `[N, C, H, W]` in [0, 1].

    The model's first submodule is `Normalize(mean, std)`; `len(mean) == len(std) ==
    in_channels`. `options` are model-specific (e.g. `dropout=` for efficientnet_b0); an
    option the model does not take raises `ValueError` listing the ones it does.
    """
    factory = MODELS.get(name)
    accepted = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _COMMON
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name!r} got unknown option(s) {unknown}; "
            f"it accepts: {accepted if accepted else 'no options'}"
        )
    return factory(
        num_classes=num_classes,
        in_channels=in_channels,
        mean=mean,
        std=std,
        image_size=image_size,
        **options,
    )


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return MODELS.list()
