"""LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling, as commonly used on MNIST."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..registry import MODELS
from .common import NormalizedClassifier, build_classifier, init_relu_convs


class LeNet5(nn.Module):
    """conv6@5x5 (pad 2) -> ReLU -> pool2 -> conv16@5x5 -> ReLU -> pool2 -> fc120 -> fc84 -> fc.

    Input: normalised `[N, in_channels, H, W]` with H, W >= 12; output: logits
    `[N, num_classes]`. The flatten size is `16 * ((H // 2 - 4) // 2) * ((W // 2 - 4) // 2)`
    (400 for 28x28, 576 for 32x32).
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        h, w = ((s // 2 - 4) // 2 for s in image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * h * w, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )
        init_relu_convs(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@MODELS.register("lenet5")
def lenet5(
    *,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int | tuple[int, int],
) -> NormalizedClassifier:
    """LeNet-5 behind `Normalize(mean, std)`; see `LeNet5`."""
    return build_classifier(
        "lenet5", lambda hw: LeNet5(num_classes, in_channels, hw), min_size=12,
        num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
        image_size=image_size,
    )
