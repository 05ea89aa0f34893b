"""Optional timm backend: build timm's EfficientNet-B0 (randomly initialised)."""

from __future__ import annotations

import importlib

from torch import nn


def timm_efficientnet_b0(
    num_classes: int, in_channels: int, dropout: float, drop_path_rate: float
) -> nn.Module:
    """`timm.create_model("efficientnet_b0", pretrained=False, ...)`; raises `ImportError`
    with install instructions when timm is not installed."""
    try:
        timm = importlib.import_module("timm")
    except ImportError:
        raise ImportError(
            "efficientnet_b0 with use_timm=True needs the 'timm' package, which is not "
            "installed; install it with `pip install 'robustlab[timm]'` or use use_timm=False "
            "(robustlab's own EfficientNet-B0)"
        ) from None
    return timm.create_model(
        "efficientnet_b0",
        pretrained=False,
        num_classes=num_classes,
        in_chans=in_channels,
        drop_rate=dropout,
        drop_path_rate=drop_path_rate,
    )
