"""`synthetic`: a tiny, deterministic, learnable dataset for fast unit tests (no files).

Each class k has a fixed random binary pattern P_k (drawn from `seed`); an example of class k is
`clamp(0.25 + 0.5 * P_k + noise * N(0, 1), 0, 1)`. With the default noise a linear model
separates the classes almost perfectly after a few steps, so training tests can assert that
accuracy rises well above chance.
"""

from __future__ import annotations

from typing import Any

import torch

from robustlab.common.checks import check_bool, check_int, check_number, check_seed
from robustlab.data.containers import ArraySplit, DatasetInfo, DatasetSplits
from robustlab.data.errors import DataError
from robustlab.data.splitting import check_split_seed, make_splits
from robustlab.registry import DATASETS

DEFAULT_VAL_FRACTION = 0.1


@DATASETS.register("synthetic")
def load_synthetic(root: Any = None, *, val_size: int | float | None = None, split_seed: int = 0,
                   download: bool = False, n_train: int = 1000, n_test: int = 200,
                   num_classes: int = 10, channels: int = 1,
                   image_size: int | tuple[int, int] = (28, 28), noise: float = 0.1,
                   seed: int = 0) -> DatasetSplits:
    """Class-pattern images [N, channels, H, W] in [0, 1]; `root` and `download` are ignored.

    Args:
        n_train, n_test: numbers of examples (classes balanced round-robin, then shuffled).
        num_classes: K >= 2. channels: C >= 1. image_size: S or (H, W).
        noise: standard deviation of the additive Gaussian noise (pixel units).
        seed: seed of the patterns and noise (the val split uses `split_seed`).
    Default val_size: 10% of n_train.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    for fname, value, low in (("n_train", n_train, 1), ("n_test", n_test, 1),
                              ("num_classes", num_classes, 2), ("channels", channels, 1),
                              ("image height", h, 1), ("image width", w, 1)):
        check_int(f"synthetic {fname}", value, low, error=DataError)
    check_number("synthetic noise", noise, 0.0, error=DataError)
    check_bool("synthetic download", download, error=DataError)  # accepted, nothing to fetch
    check_seed("synthetic seed", seed, error=DataError)
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
