"""The denoising autoencoder (MagNet's "reformer", Meng & Chen 2017), registered as the MODEL
`denoising-autoencoder`: `robustlab train --model denoising-autoencoder --method autoencoder`
trains it (`robustlab.training.methods.autoencoder`), and the DEFENSE `autoencoder`
(`robustlab.defenses.autoencoder`) puts a trained one in front of a classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models.common import check_model_args
from robustlab.registry import MODELS

AUTOENCODER_MODEL = "denoising-autoencoder"


class DenoisingAutoencoder(nn.Module):
    """Image-to-image: `[N, C, H, W]` in [0, 1] -> `[N, C, H, W]` in (0, 1).

    encoder: conv3x3(C -> w) ReLU, conv3x3 stride 2 (w -> w) ReLU   (H, W -> ceil(H/2), ceil(W/2))
    decoder: nearest upsampling to (H, W), conv3x3(w -> w) ReLU, conv3x3(w -> C), sigmoid.
    Works in pixel space (no normalisation layer) for any H, W >= 2; `width` = w.
    """

    def __init__(self, in_channels: int, width: int = 32) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.width = width
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, in_channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        z = self.encoder(x)
        return self.decoder(F.interpolate(z, size=x.shape[-2:], mode="nearest"))


@MODELS.register(AUTOENCODER_MODEL)
def denoising_autoencoder(
    *,
    num_classes: int,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: int | tuple[int, int],
) -> DenoisingAutoencoder:
    """The model factory (same signature as every model; `num_classes`, `mean` and `std` are
    validated but unused: the autoencoder reconstructs pixels, it does not classify)."""
    check_model_args(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
                     image_size=image_size)
    return DenoisingAutoencoder(in_channels)
