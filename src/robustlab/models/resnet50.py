"""ResNet-50 for ImageNet (He et al., 2016) as torchvision defines it (`resnet50()`, the
"v1.5" variant: the stride of a down-sampling bottleneck sits on its 3x3 conv), written without
torchvision. `model.body`'s state-dict keys and shapes are torchvision's, key for key (`conv1`,
`bn1`, `layer1.0.conv1`, ..., `layer1.0.downsample.0`, `fc`), so torchvision checkpoints and
RobustBench's ImageNet ResNet-50 entries load into it unchanged."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..registry import MODELS
from .common import NormalizedClassifier, build_classifier, init_relu_convs

RESNET50_BLOCKS = (3, 4, 6, 3)
EXPANSION = 4


class Bottleneck(nn.Module):
    """conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1(x4)-BN, plus the identity or the
    `downsample` projection (conv1x1(stride)-BN), then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        out_planes = planes * EXPANSION
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(out + skip)


class ResNet50(nn.Module):
    """Stem conv7x7(64) s2 - BN - ReLU - max-pool 3x3 s2, four bottleneck stages [3, 4, 6, 3]
    (64-128-256-512 x4, stride 1, 2, 2, 2), global average pool, linear head `fc`.

    Input: normalised `[N, in_channels, H, W]` (H, W >= 32; 224 on ImageNet); output: logits.
    """

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_planes = 64
        for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), RESNET50_BLOCKS,
                                                    strict=True)):
            blocks = []
            for i in range(count):
                blocks.append(Bottleneck(in_planes, planes, 2 if stage > 0 and i == 0 else 1))
                in_planes = planes * EXPANSION
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        init_relu_convs(self, mode="fan_out")  # as torchvision

    def forward(self, x: Tensor) -> Tensor:
        out = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.avgpool(out).flatten(1))


@MODELS.register("resnet50")
def resnet50(*, num_classes: int, in_channels: int, mean: Sequence[float],
             std: Sequence[float], image_size: int | tuple[int, int]) -> NormalizedClassifier:
    """ImageNet ResNet-50 (torchvision's definition) behind `Normalize(mean, std)`."""
    return build_classifier(
        "resnet50", lambda hw: ResNet50(num_classes, in_channels), min_size=32,
        num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
        image_size=image_size)
