"""DeepMind's WideResNet (Gowal et al., 2020; Rebuffi et al., 2021; Wang et al., 2023), as
RobustBench defines it (`robustbench/model_zoo/architectures/dm_wide_resnet.py`): the
architecture of every WRN-70-16 entry and of the SiLU WRN-28-10 / 34-20 entries. Registered as
`wrn-28-10-silu`, `wrn-34-20-silu` and `wrn-70-16-silu`: every RobustBench entry of this
definition uses SiLU (DeepMind's `Swish` is the same function), so the name says it.

How it differs from `wide_resnet.py` (RobustBench's ReLU WideResNet): SiLU activations; key
names `init_conv`, `layer.<g>.block.<i>.batchnorm_0 / conv_0 / batchnorm_1 / conv_1 /
shortcut`, `batchnorm`, `logits`; the first conv of a block pads explicitly, (1, 1, 1, 1) at
stride 1 and (0, 1, 0, 1) at stride 2 (TensorFlow's "SAME"), so its stride-2 convs see other
pixels than a symmetric padding would. DeepMind's model normalises inside (mean/std buffers
that are not in its state dict); here that is the `Normalize` in front, the same arithmetic.
Its `padding` argument (zero-padding the input first) is 0 in every RobustBench entry and is
not supported."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import MODELS
from .common import NormalizedClassifier, build_classifier
from .wide_resnet import WRN_BASE_WIDTHS


class DMBlock(nn.Module):
    """BN-SiLU-pad-conv3x3-BN-SiLU-conv3x3 plus a shortcut (a 1x1 conv of the pre-activated
    input when the width changes, else the raw input).
    `[N, in, H, W] -> [N, out, H / stride, W / stride]`."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes)
        self.relu_0 = nn.SiLU()
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes)
        self.relu_1 = nn.SiLU()
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if in_planes != out_planes:
            self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
        self.pad = (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu_0(self.batchnorm_0(x))
        out = self.conv_0(F.pad(act, self.pad))
        out = self.conv_1(self.relu_1(self.batchnorm_1(out)))
        skip = x if self.shortcut is None else self.shortcut(act)
        return skip + out


class DMBlockGroup(nn.Module):
    """`count` blocks, the first changing width and stride; keys `block.<i>.*`."""

    def __init__(self, count: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(*[
            DMBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
            for i in range(count)])

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class DMWideResNet(nn.Module):
    """Stem conv3x3(16) `init_conv`, three block groups of (depth - 4) / 6 blocks (stride 1, 2,
    2) in `layer`, final BN-SiLU, global average pool, linear head `logits`. PyTorch's default
    initialisation (as DeepMind's PyTorch code).

    Input: normalised `[N, in_channels, H, W]` (H, W >= 8); output: logits `[N, num_classes]`.
    """

    def __init__(self, depth: int, width: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        count = (depth - 4) // 6
        widths = [16] + [w * width for w in WRN_BASE_WIDTHS]
        self.init_conv = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.layer = nn.Sequential(*[
            DMBlockGroup(count, widths[g], widths[g + 1], 1 if g == 0 else 2) for g in range(3)])
        self.batchnorm = nn.BatchNorm2d(widths[3])
        self.relu = nn.SiLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.logits = nn.Linear(widths[3], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.batchnorm(self.layer(self.init_conv(x))))
        return self.logits(self.pool(out).flatten(1))


def _register(depth: int, width: int) -> None:
    name = f"wrn-{depth}-{width}-silu"

    @MODELS.register(name)
    def factory(*, num_classes: int, in_channels: int, mean: Sequence[float],
                std: Sequence[float], image_size: int | tuple[int, int]) -> NormalizedClassifier:
        return build_classifier(
            name, lambda hw: DMWideResNet(depth, width, num_classes, in_channels), min_size=8,
            num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
            image_size=image_size)

    factory.__name__ = factory.__qualname__ = name.replace("-", "_")
    factory.__doc__ = (f"DeepMind's WideResNet-{depth}-{width} with SiLU behind "
                       "`Normalize(mean, std)`; see `DMWideResNet`.")


for _depth, _width in ((28, 10), (34, 20), (70, 16)):
    _register(_depth, _width)
