"""The MNIST robustness CNN of Madry et al. (2018), "Towards Deep Learning Models Resistant
to Adversarial Attacks" (their MNIST challenge model)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..registry import MODELS
from .common import NormalizedClassifier, build_classifier, init_relu_convs


class SmallCNN(nn.Module):
    """conv32@5x5 (pad 2) -> ReLU -> pool2 -> conv64@5x5 (pad 2) -> ReLU -> pool2 -> fc1024 -> fc.

    Input: normalised `[N, in_channels, H, W]` with H, W >= 4; output: logits
    `[N, num_classes]`. The flatten size is `64 * (H // 4) * (W // 4)` (3136 for 28x28).
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        h, w = (s // 2 // 2 for s in image_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * h * w, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, num_classes),
        )
        init_relu_convs(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


@MODELS.register("smallcnn")
def smallcnn(
    *,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int | tuple[int, int],
) -> NormalizedClassifier:
    """The Madry et al. MNIST CNN behind `Normalize(mean, std)`; see `SmallCNN`."""
    return build_classifier(
        "smallcnn", lambda hw: SmallCNN(num_classes, in_channels, hw), min_size=4,
        num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
        image_size=image_size,
    )
