"""The MNIST network of TRADES (Zhang et al., 2019, "Theoretically Principled Trade-off between
Robustness and Accuracy"; the `SmallCNN` of github.com/yaodongyu/TRADES, models/small_cnn.py):
four 3x3 convolutions 32/32/64/64 with two 2x2 max-pools, then fully connected 200/200 with
dropout. About 312 k parameters for 1x28x28 inputs; the network behind TRADES' published
MNIST eps 0.3 figures, which robustlab's `smallcnn` (Madry et al.'s model) is not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from ..common.options import Option, declare
from ..registry import MODELS
from .common import NormalizedClassifier, build_classifier, init_relu_convs


class TradesCNN(nn.Module):
    """conv32@3 -> conv32@3 -> pool2 -> conv64@3 -> conv64@3 -> pool2 -> fc200 -> dropout ->
    fc200 -> fc (ReLU after each conv and hidden fc; no padding).

    Input: normalised `[N, in_channels, H, W]` with H, W >= 16; output: logits
    `[N, num_classes]`. The flatten size is `64 * h * w` with `h = ((H - 4) // 2 - 4) // 2`
    (1024 for 28x28). The layers keep TRADES' names (`feature_extractor.conv1`, ...,
    `classifier.fc3`) so its state dicts map key for key; the initialisation is its own (He
    normal convolutions with zero bias, PyTorch's default for the hidden fcs, a zero last layer).
    """

    def __init__(self, num_classes: int, in_channels: int, image_size: tuple[int, int], *,
                 dropout: float) -> None:
        super().__init__()
        h, w = (((s - 4) // 2 - 4) // 2 for s in image_size)
        self.flat = 64 * h * w
        convs = [("conv1", in_channels, 32), ("conv2", 32, 32), ("conv3", 32, 64),
                 ("conv4", 64, 64)]
        layers: list[tuple[str, nn.Module]] = []
        for i, (name, c_in, c_out) in enumerate(convs, start=1):
            layers += [(name, nn.Conv2d(c_in, c_out, 3)), (f"relu{i}", nn.ReLU(inplace=True))]
            if i % 2 == 0:
                layers.append((f"maxpool{i // 2}", nn.MaxPool2d(2, 2)))
        self.feature_extractor = nn.Sequential(OrderedDict(layers))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(self.flat, 200)), ("relu1", nn.ReLU(inplace=True)),
            ("drop", nn.Dropout(dropout)),
            ("fc2", nn.Linear(200, 200)), ("relu2", nn.ReLU(inplace=True)),
            ("fc3", nn.Linear(200, num_classes)),
        ]))
        init_relu_convs(self)
        nn.init.zeros_(self.classifier.fc3.weight)
        nn.init.zeros_(self.classifier.fc3.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.feature_extractor(x).flatten(1))


@MODELS.register("trades-cnn")
@declare({
    "dropout": Option(0.5, "float", "dropout after the first fully connected layer (TRADES: "
                      "0.5)", low=0.0, high=1.0, high_open=True),
})
def trades_cnn(
    *,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int | tuple[int, int],
    dropout: float,
) -> NormalizedClassifier:
    """The TRADES MNIST network behind `Normalize(mean, std)`; see `TradesCNN`. `dropout` is
    declared above and checked by `create_model`."""
    return build_classifier(
        "trades-cnn", lambda hw: TradesCNN(num_classes, in_channels, hw, dropout=dropout),
        min_size=16, num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
        image_size=image_size, options={"dropout": dropout},
    )
