"""`synthetic`: a tiny, deterministic, learnable dataset for fast unit tests (no files).

Each class k has a fixed random binary pattern P_k (drawn from `seed`); an example of class k is
`clamp(0.25 + 0.5 * P_k + noise * N(0, 1), 0, 1)`. With the default noise a linear model
separates the classes almost perfectly after a few steps, so training tests can assert that
accuracy rises well above chance.
"""

from __future__ import annotations

from typing import Any

import torch

from robustlab.common.checks import SEED_MAX
from robustlab.common.options import Option, declare
from robustlab.data.containers import ArraySplit, DatasetInfo, DatasetSplits
from robustlab.data.splitting import check_split_seed, make_splits
from robustlab.registry import DATASETS

DEFAULT_VAL_FRACTION = 0.1


@DATASETS.register("synthetic")
@declare({
    "n_train": Option(1000, "int", "training examples (classes balanced round-robin, then "
                      "shuffled)", low=1),
    "n_test": Option(200, "int", "test examples", low=1),
    "num_classes": Option(10, "int", "classes K", low=2),
    "channels": Option(1, "int", "image channels C", low=1),
    "image_size": Option((28, 28), "size", "S or (H, W)", low=1),
    "noise": Option(0.1, "float", "std of the additive Gaussian noise (pixel units)", low=0.0),
    "seed": Option(0, "int", "seed of the patterns and noise (the val split uses split_seed)",
                   high=SEED_MAX),
})
def load_synthetic(root: Any = None, *, val_size: int | float | None = None, split_seed: int = 0,
                   download: bool = False, n_train: int, n_test: int, num_classes: int,
                   channels: int, image_size: int | tuple[int, int], noise: float,
                   seed: int) -> DatasetSplits:
    """Class-pattern images [N, channels, H, W] in [0, 1]; `root` and `download` are ignored.
    The options (declared above, checked by `load_dataset`) are the examples per split, the
    classes, channels and image size, the noise and the seed. Default val_size: 10% of n_train.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    check_split_seed(split_seed)
    gen = torch.Generator().manual_seed(int(seed))
    patterns = (torch.rand(num_classes, channels, h, w, generator=gen) > 0.5).float()
    train = _sample(patterns, n_train, float(noise), gen)
    test = _sample(patterns, n_test, float(noise), gen)
    mean = tuple(round(float(v), 4) for v in train.x.mean(dim=(0, 2, 3)))
    std = tuple(max(round(float(v), 4), 1e-3) for v in train.x.std(dim=(0, 2, 3)))
    info = DatasetInfo(name="synthetic", num_classes=num_classes, channels=channels,
                       image_size=(h, w), mean=mean, std=std,
                       class_names=tuple(f"class{k}" for k in range(num_classes)))
    source = {"root": None, "files": [], "generator_seed": int(seed), "noise": float(noise)}
    return make_splits(train, test, info, source, val_size=val_size,
                       default_val_size=DEFAULT_VAL_FRACTION, split_seed=split_seed)


def _sample(patterns: torch.Tensor, n: int, noise: float, gen: torch.Generator) -> ArraySplit:
    k = patterns.shape[0]
    y = (torch.arange(n) % k)[torch.randperm(n, generator=gen)]
    x = 0.25 + 0.5 * patterns[y] + noise * torch.randn(n, *patterns.shape[1:], generator=gen)
    return ArraySplit(x.clamp_(0.0, 1.0), y.to(torch.int64))
