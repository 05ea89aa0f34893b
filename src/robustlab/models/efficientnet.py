"""EfficientNet-B0 (Tan & Le, 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks"), implemented here in plain torch.nn; `use_timm=True` builds timm's instead."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..common.options import Option, declare
from ..registry import MODELS
from .common import NormalizedClassifier, build_classifier, init_relu_convs
from .drop_path import DropPath
from .timm_backend import timm_efficientnet_b0

# (expand ratio, kernel, stride of the first block, output channels, repeats) per stage.
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
B0_STEM = 32
B0_HEAD = 1280
SE_RATIO = 0.25


def conv_bn_act(
    c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """Conv (no bias, padding kernel // 2) -> BatchNorm -> SiLU (if `act`)."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel gating: global avg pool -> 1x1 conv (squeeze) -> SiLU -> 1x1 conv -> sigmoid,
    multiplied onto the input. `[N, channels, H, W] -> same`."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * scale.sigmoid()


class MBConv(nn.Module):
    """Inverted residual block: [1x1 expand-BN-SiLU] -> depthwise kxk-BN-SiLU -> SE ->
    1x1 project-BN, plus a (stochastic-depth) residual when stride 1 and `c_in == c_out`.

    The SE bottleneck is `max(1, int(c_in * 0.25))` channels (relative to the block input,
    as in the reference implementation). `[N, c_in, H, W] -> [N, c_out, H', W']`.
    """

    def __init__(
        self, c_in: int, c_out: int, expand: int, kernel: int, stride: int, drop_path: float
    ) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(c_in, hidden, 1))
        layers += [
            conv_bn_act(hidden, hidden, kernel, stride, groups=hidden),
            SqueezeExcite(hidden, max(1, int(c_in * SE_RATIO))),
            conv_bn_act(hidden, c_out, 1, act=False),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out
        self.drop_path = DropPath(drop_path) if self.residual else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        if self.residual:
            out = self.drop_path(out) + x
        return out


class EfficientNetB0(nn.Module):
    """Stem conv3x3 s2 (32) -> 16 MBConv blocks (`B0_STAGES`) -> conv1x1 (1280) -> global
    avg pool -> dropout -> linear. Total stride 32.

    Input: normalised `[N, in_channels, H, W]`; output: logits `[N, num_classes]`.
    `drop_path_rate` is the stochastic-depth rate of the last block, scaled linearly from 0
    for the first block.
    """

    def __init__(
        self, num_classes: int, in_channels: int, *, dropout: float, drop_path_rate: float
    ) -> None:
        super().__init__()
        self.stem = conv_bn_act(in_channels, B0_STEM, 3, stride=2)
        total = sum(stage[-1] for stage in B0_STAGES)
        blocks: list[nn.Module] = []
        c_in = B0_STEM
        for expand, kernel, stride, c_out, repeats in B0_STAGES:
            for i in range(repeats):
                rate = drop_path_rate * len(blocks) / total
                blocks.append(MBConv(c_in, c_out, expand, kernel, stride if i == 0 else 1, rate))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.head = conv_bn_act(c_in, B0_HEAD, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(B0_HEAD, num_classes)
        init_relu_convs(self, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        out = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(self.pool(out).flatten(1)))


@MODELS.register("efficientnet_b0")
@declare({
    "dropout": Option(0.2, "float", "dropout before the classifier (B0 standard 0.2)",
                      low=0.0, high=1.0, high_open=True),
    "drop_path_rate": Option(0.0, "float", "stochastic depth (0 = off; the reference training "
                             "used 0.2)", low=0.0, high=1.0, high_open=True),
    "use_timm": Option(False, "bool", "build timm.create_model('efficientnet_b0') (random "
                       "init) instead; needs timm installed"),
})
def efficientnet_b0(
    *,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int | tuple[int, int],
    dropout: float,
    drop_path_rate: float,
    use_timm: bool,
) -> NormalizedClassifier:
    """EfficientNet-B0 behind `Normalize(mean, std)`; see `EfficientNetB0`. The options
    (`dropout`, `drop_path_rate`, `use_timm`) are declared above and checked by `create_model`.
    """

    def make_body(hw: tuple[int, int]) -> nn.Module:
        if use_timm:
            return timm_efficientnet_b0(num_classes, in_channels, dropout, drop_path_rate)
        return EfficientNetB0(num_classes, in_channels, dropout=dropout,
                              drop_path_rate=drop_path_rate)

    return build_classifier(
        "efficientnet_b0", make_body, min_size=8, num_classes=num_classes,
        in_channels=in_channels, mean=mean, std=std, image_size=image_size,
        options={"dropout": dropout, "drop_path_rate": drop_path_rate, "use_timm": use_timm},
    )
