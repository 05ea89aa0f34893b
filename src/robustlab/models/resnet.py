"""ResNet-18, CIFAR variant (He et al., 2016, "Deep Residual Learning for Image Recognition"):
3x3 stride-1 stem without max-pool, BasicBlocks [2, 2, 2, 2], widths 64-128-256-512."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..registry import MODELS
from .common import NormalizedClassifier, build_classifier, init_relu_convs

RESNET_WIDTHS = (64, 128, 256, 512)
RESNET18_BLOCKS = (2, 2, 2, 2)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus identity (or 1x1 conv-BN projection), then ReLU.

    `[N, in_planes, H, W] -> [N, planes, ceil(H / stride), ceil(W / stride)]`.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet with BasicBlocks: stem conv3x3(64) s1, four stages (stride 1, 2, 2, 2),
    global average pool, linear head.

    Input: normalised `[N, in_channels, H, W]` (any H, W >= 8); output: logits `[N, num_classes]`.
    """

    def __init__(self, blocks: Sequence[int], num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, RESNET_WIDTHS[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(RESNET_WIDTHS[0]),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        in_planes = RESNET_WIDTHS[0]
        for stage, (planes, count) in enumerate(zip(RESNET_WIDTHS, blocks, strict=True)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_relu_convs(self, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool(self.layers(self.stem(x)))
        return self.fc(out.flatten(1))


@MODELS.register("resnet18")
def resnet18(
    *,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int | tuple[int, int],
) -> NormalizedClassifier:
    """CIFAR ResNet-18 behind `Normalize(mean, std)`; see `ResNet`."""
    return build_classifier(
        "resnet18", lambda hw: ResNet(RESNET18_BLOCKS, num_classes, in_channels), min_size=8,
        num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
        image_size=image_size,
    )
