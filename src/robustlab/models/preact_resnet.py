"""Pre-activation ResNet-18 (He et al., 2016, "Identity Mappings in Deep Residual Networks"),
CIFAR stem: 3x3 stride-1 conv, no max-pool; the architecture used by Rice et al. (2020) and
Wong et al. (2020) for CIFAR-10 adversarial training."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..registry import MODELS
from .common import NormalizedClassifier, build_classifier, init_relu_convs
from .resnet import RESNET18_BLOCKS, RESNET_WIDTHS


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3, added to the identity, or to a 1x1 conv projection
    of the pre-activated input when the shape changes. No activation after the addition.

    `[N, in_planes, H, W] -> [N, planes, ceil(H / stride), ceil(W / stride)]`.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """Stem conv3x3(64) s1 (no BN: the first block pre-activates), four PreActBlock stages
    (stride 1, 2, 2, 2), final BN-ReLU, global average pool, linear head.

    Input: normalised `[N, in_channels, H, W]` (any H, W >= 8); output: logits `[N, num_classes]`.
    """

    def __init__(self, blocks: Sequence[int], num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, RESNET_WIDTHS[0], 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = RESNET_WIDTHS[0]
        for stage, (planes, count) in enumerate(zip(RESNET_WIDTHS, blocks, strict=True)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(PreActBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_relu_convs(self, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn(self.layers(self.stem(x))))
        return self.fc(self.pool(out).flatten(1))


@MODELS.register("preact_resnet18")
def preact_resnet18(
    *,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int | tuple[int, int],
) -> NormalizedClassifier:
    """Pre-activation ResNet-18 behind `Normalize(mean, std)`; see `PreActResNet`."""
    return build_classifier(
        "preact_resnet18", lambda hw: PreActResNet(RESNET18_BLOCKS, num_classes, in_channels),
        min_size=8, num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
        image_size=image_size,
    )
