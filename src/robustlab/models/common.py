"""Argument checks shared by every model factory, and the normalise-then-classify wrapper."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from robustlab.common.checks import check_int

from .normalize import Normalize


def check_model_args(
    *,
    num_classes: Any,
    in_channels: Any,
    mean: Any,
    std: Any,
    image_size: Any,
) -> tuple[int, int]:
    """Validate the arguments every model takes; return `image_size` as `(height, width)`.

    Raises `ValueError` naming the field, the value and what was expected, before any
    module is built.
    """
    check_int("num_classes", num_classes, 2)
    check_int("in_channels", in_channels, 1)
    for field, values in (("mean", mean), ("std", std)):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | Tensor):
            raise ValueError(
                f"{field} must be a sequence with one number per channel "
                f"(in_channels={in_channels}), got {values!r}"
            )
        if len(values) != in_channels:
            raise ValueError(
                f"{field} has {len(values)} values but in_channels={in_channels}; "
                "expected one value per input channel"
            )
    return image_hw(image_size)


def image_hw(image_size: Any) -> tuple[int, int]:
    """`image_size` as `(height, width)`: an int (square) or a pair of ints, all positive."""
    if isinstance(image_size, Sequence) and not isinstance(image_size, (str, bytes)):
        if len(image_size) != 2:
            raise ValueError(
                f"image_size must be an int or a (height, width) pair, got {image_size!r}"
            )
        h, w = image_size
        check_int("image_size[0] (height)", h, 1)
        check_int("image_size[1] (width)", w, 1)
        return int(h), int(w)
    check_int("image_size", image_size, 1)
    return int(image_size), int(image_size)


def check_min_size(name: str, hw: tuple[int, int], minimum: int) -> None:
    """Raise if the image is smaller than the architecture can take."""
    if min(hw) < minimum:
        raise ValueError(
            f"image_size={hw} is too small for {name}: height and width must be >= {minimum}"
        )


class NormalizedClassifier(nn.Module):
    """`body(Normalize(mean, std)(x))`: a classifier that takes pixel-space inputs.

    Input: float `[N, C, H, W]` in [0, 1]. Output: logits `[N, num_classes]`.
    `normalize` is the first submodule; `body` is the plain network on normalised inputs.
    `spec` holds the arguments that rebuild the model with `create_model(**spec)`.
    """

    def __init__(
        self,
        body: nn.Module,
        *,
        name: str,
        num_classes: int,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: tuple[int, int],
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body
        self.arch = name
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.spec: dict[str, Any] = {
            "name": name,
            "num_classes": num_classes,
            "in_channels": in_channels,
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
            "image_size": list(image_size),
            **(options or {}),
        }

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.normalize(x))


def build_classifier(
    name: str,
    make_body: Callable[[tuple[int, int]], nn.Module],
    *,
    min_size: int,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: Any,
    options: dict[str, Any] | None = None,
) -> NormalizedClassifier:
    """Validate the arguments every model takes, then wrap `make_body((height, width))` behind
    `Normalize(mean, std)`. The one place a model factory's common work is done."""
    hw = check_model_args(
        num_classes=num_classes, in_channels=in_channels, mean=mean, std=std, image_size=image_size
    )
    check_min_size(name, hw, min_size)
    return NormalizedClassifier(make_body(hw), name=name, num_classes=num_classes,
                                in_channels=in_channels, mean=mean, std=std, image_size=hw,
                                options=options)


def init_relu_convs(module: nn.Module, *, mode: str = "fan_in") -> None:
    """He (Kaiming) normal init (`mode` "fan_in" or "fan_out") for every conv in `module`;
    zero conv biases.

    Linear layers keep PyTorch's default init. BatchNorm starts at weight 1, bias 0.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
