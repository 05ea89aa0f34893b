"""`create_model` / `list_models`: build any registered model by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.common.options import resolve_options

from ..registry import MODELS


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
    in_channels`. `options` are model-specific (e.g. `dropout=` for efficientnet_b0), as the
    model declares them (its factory's `OPTIONS`, `common.options.declare`): each is checked
    here, once, an absent one is its declared default, and an option the model does not
    declare is a `ConfigError` (a `ValueError`) listing the ones it does.
    """
    factory = MODELS.get(name)
    values = resolve_options(getattr(factory, "OPTIONS", {}), options, owner=f"model {name!r}",
                             error=ConfigError)
    return factory(
        num_classes=num_classes,
        in_channels=in_channels,
        mean=mean,
        std=std,
        image_size=image_size,
        **values,
    )


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return MODELS.list()
