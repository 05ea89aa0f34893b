"""Mini-batches by index slicing, and batched augmentation.

Why no `torch.utils.data.DataLoader`: every split already sits in memory as one tensor, so a
batch is a single index-select. A DataLoader would collate per example in Python (and, with
workers, pickle tensors between processes), which costs far more than the indexing itself and
makes the shuffle order depend on worker settings. Here the order depends only on `generator`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from robustlab.common.checks import check_int
from robustlab.data.containers import ArraySplit
from robustlab.data.errors import DataError
from robustlab.data.layout import as_nchw

Augment = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def iterate_batches(split: ArraySplit, batch_size: int, *, shuffle: bool = False,
                    generator: torch.Generator | None = None, drop_last: bool = False,
                    augment: Augment | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x [B, C, H, W], y [B]) batches covering the split once, on the split's device.

    Args:
        split: the examples.
        batch_size: B >= 1; the last batch is smaller unless `drop_last`.
        shuffle: visit examples in the order of `torch.randperm(N, generator=generator)`;
            otherwise in stored order.
        generator: source of randomness for the permutation and for `augment`.
        drop_last: skip the final incomplete batch.
        augment: optional `augment(x, generator) -> x`, applied to each batch.
    """
    check_int("batch_size", batch_size, 1, error=DataError)
    n = len(split)
    order = None
    if shuffle:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(n, generator=generator, device=gen_device).to(split.x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            x = split.x[start:start + batch_size]
            y = split.y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            x, y = split.x[idx], split.y[idx]
        if augment is not None:
            x = augment(x, generator)
        yield x, y


def random_crop_flip(padding: int = 4, *, flip: bool = True) -> Augment:
    """Random crop after zero-padding by `padding` pixels, plus random horizontal flip.

    The returned callable maps x [B, C, H, W] to a new tensor of the same shape; each image gets
    its own offsets (uniform in [0, 2*padding]) and, if `flip`, a flip with probability 1/2.
    Implemented as one gather over the batch (no per-image Python loop). Deterministic given
    the generator state.
    """
    check_int("random_crop_flip padding", padding, 0, error=DataError)

    def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise DataError(f"random_crop_flip: expected x of shape [B, C, H, W], found "
                            f"{tuple(x.shape)}")
        b, c, h, w = x.shape
        gen_device = generator.device if generator is not None else torch.device("cpu")
        offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator,
                                device=gen_device).to(x.device)
        flips = (torch.rand(b, generator=generator, device=gen_device) < 0.5).to(x.device)
        if not flip:
            flips = torch.zeros_like(flips)
        padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        rows = offsets[0, :, None] + torch.arange(h, device=x.device)              # [B, H]
        cols_fwd = torch.arange(w, device=x.device)
        cols = torch.where(flips[:, None], cols_fwd.flip(0), cols_fwd) + offsets[1, :, None]
        batch = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # [B,H,W,C]
        return as_nchw(out.permute(0, 3, 1, 2))

    return augment
