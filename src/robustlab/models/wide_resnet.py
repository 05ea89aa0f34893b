"""WideResNet as RobustBench defines it (`robustbench/model_zoo/architectures/wide_resnet.py`,
from TRADES' code; Zagoruyko & Komodakis, 2016): pre-activation blocks, ReLU, widths
16-16k-32k-64k. Registered as `wrn-28-10`, `wrn-34-10` and `wrn-34-20`; the state-dict keys of
`model.body` are RobustBench's, key for key (`conv1`, `block1.layer.0.bn1`, ..., `bn1`, `fc`),
so a RobustBench checkpoint of this architecture loads into it unchanged.

The DeepMind WideResNet of the WRN-70-16 entries (SiLU, other key names, asymmetric padding)
is `dm_wide_resnet.py`."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..common.options import Option, declare
from ..registry import MODELS
from .common import NormalizedClassifier, build_classifier, init_relu_convs

WRN_BASE_WIDTHS = (16, 32, 64)


class WRNBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus a shortcut. When the width changes, the
    pre-activated input feeds both the block and a 1x1 conv shortcut (`convShortcut`);
    otherwise the shortcut is the raw input. `[N, in, H, W] -> [N, out, H / stride, W / stride]`.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut: nn.Module | None = None  # noqa: N815 (RobustBench's key name)
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(act))))
        skip = x if self.convShortcut is None else self.convShortcut(act)
        return skip + out


class WRNGroup(nn.Module):
    """`count` blocks, the first one changing width and stride; keys `layer.<i>.*`."""

    def __init__(self, count: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[
            WRNBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
            for i in range(count)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """Stem conv3x3(16), three groups of (depth - 4) / 6 blocks (stride 1, 2, 2), final
    BN-ReLU, global average pool, linear head `fc`. `sub_block1=True` adds the unused group
    `sub_block1` some RobustBench checkpoints carry (Carmon2019Unlabeled,
    Zhang2019Theoretically): its weights load but never take part in the forward pass.

    Input: normalised `[N, in_channels, H, W]` (H, W >= 8); output: logits `[N, num_classes]`.
    """

    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int, *,
                 sub_block1: bool = False) -> None:
        super().__init__()
        count = (depth - 4) // 6
        widths = [16] + [w * widen for w in WRN_BASE_WIDTHS]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = WRNGroup(count, widths[0], widths[1], 1)
        if sub_block1:
            self.sub_block1 = WRNGroup(count, widths[0], widths[1], 1)
        self.block2 = WRNGroup(count, widths[1], widths[2], 2)
        self.block3 = WRNGroup(count, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        init_relu_convs(self, mode="fan_out")  # RobustBench: normal(0, sqrt(2 / (k*k*out)))
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return self.fc(self.pool(out).flatten(1))


OPTIONS = {"sub_block1": Option(False, "bool", "add the unused block group `sub_block1` that "
                                "some RobustBench checkpoints carry (Carmon2019Unlabeled, "
                                "Zhang2019Theoretically)")}


def _register(depth: int, widen: int) -> None:
    name = f"wrn-{depth}-{widen}"

    @MODELS.register(name)
    @declare(OPTIONS)
    def factory(*, num_classes: int, in_channels: int, mean: Sequence[float],
                std: Sequence[float], image_size: int | tuple[int, int],
                sub_block1: bool) -> NormalizedClassifier:
        return build_classifier(
            name, lambda hw: WideResNet(depth, widen, num_classes, in_channels,
                                        sub_block1=sub_block1),
            min_size=8, num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
            image_size=image_size, options={"sub_block1": sub_block1})

    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    factory.__doc__ = (f"WideResNet-{depth}-{widen} (RobustBench's definition, ReLU) behind "
                       "`Normalize(mean, std)`; see `WideResNet`.")


for _depth, _widen in ((28, 10), (34, 10), (34, 20)):
    _register(_depth, _widen)
