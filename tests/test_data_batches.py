"""Data layer: iterate_batches and the batched random_crop_flip augmentation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustlab.data import ArraySplit, DataError, iterate_batches, load_dataset, random_crop_flip


def _split(n: int = 23) -> ArraySplit:
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ArraySplit(x / n, torch.arange(n))


def test_sequential_batches_cover_in_order():
    batches = list(iterate_batches(_split(), 5))
    assert [len(y) for _, y in batches] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(23))
    assert [len(y) for _, y in iterate_batches(_split(), 5, drop_last=True)] == [5, 5, 5, 5]
    assert list(iterate_batches(_split(3), 5, drop_last=True)) == []


def test_shuffled_epoch_visits_every_index_once_and_is_seeded():
    split = _split()
    epochs = []
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):
        ys = [y for _, y in iterate_batches(split, 4, shuffle=True, generator=gen)]
        seen = torch.cat(ys)
        assert torch.equal(seen.sort().values, torch.arange(23))
        epochs.append(seen)
    assert not torch.equal(epochs[0], epochs[1])  # the generator advances between epochs
    again = torch.cat([y for _, y in iterate_batches(split, 4, shuffle=True,
                                                     generator=torch.Generator().manual_seed(0))])
    assert torch.equal(again, epochs[0])
    # x and y stay paired under shuffling.
    for x, y in iterate_batches(split, 4, shuffle=True, generator=torch.Generator()):
        assert torch.equal(x[:, 0, 0, 0], y.float() / 23)
    dropped = torch.cat([y for _, y in iterate_batches(split, 4, shuffle=True, drop_last=True,
                                                       generator=torch.Generator())])
    assert len(dropped) == 20 and len(set(dropped.tolist())) == 20


def test_batch_size_validation_and_augment_hook():
    with pytest.raises(DataError, match=r"batch_size: expected an integer >= 1, got 0"):
        next(iterate_batches(_split(), 0))
    calls = []

    def aug(x, generator):
        calls.append(generator)
        return 1.0 - x

    gen = torch.Generator()
    out = [x for x, _ in iterate_batches(_split(), 10, augment=aug, generator=gen)]
    assert len(calls) == 3 and all(g is gen for g in calls)
    assert torch.allclose(out[0], 1.0 - _split().x[:10])


def _brute_force_windows(img: torch.Tensor, padding: int) -> list[torch.Tensor]:
    _, h, w = img.shape
    padded = F.pad(img, (padding,) * 4)
    out = []
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            win = padded[:, dy:dy + h, dx:dx + w]
            out += [win, win.flip(-1)]
    return out


def test_random_crop_flip_shape_content_and_determinism():
    x = torch.rand(16, 3, 6, 5)
    aug = random_crop_flip(2)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    for i in range(16):  # every output is a padded window of its own input, maybe mirrored
        assert any(torch.equal(a[i], win) for win in _brute_force_windows(x[i], 2))
    no_pad_flip = random_crop_flip(0)(x, torch.Generator().manual_seed(3))
    kinds = [torch.equal(no_pad_flip[i], x[i]) or torch.equal(no_pad_flip[i], x[i].flip(-1))
             for i in range(16)]
    assert all(kinds)
    flipped = sum(torch.equal(no_pad_flip[i], x[i].flip(-1)) for i in range(16))
    assert 2 <= flipped <= 14  # both outcomes occur with 16 coin flips (seeded)
    assert torch.equal(random_crop_flip(0, flip=False)(x, torch.Generator()), x)
    with pytest.raises(DataError, match="padding: expected an integer >= 0, got -1"):
        random_crop_flip(-1)


def test_augment_in_iterate_batches_is_reproducible():
    d = load_dataset("synthetic", n_train=64, n_test=8, image_size=8, channels=3, val_size=0)

    def epoch(seed):
        gen = torch.Generator().manual_seed(seed)
        return torch.cat([x for x, _ in iterate_batches(d.train, 16, shuffle=True, generator=gen,
                                                        augment=random_crop_flip(2))])

    assert torch.equal(epoch(5), epoch(5)) and not torch.equal(epoch(5), epoch(6))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_and_augment_on_cuda_match_cpu():
    """Splits on the GPU with a CPU generator give exactly the CPU batches (same permutation,
    same crop offsets and flips)."""
    d = load_dataset("synthetic", n_train=64, n_test=8, image_size=8, channels=3, val_size=0)
    gpu = d.train.to("cuda")
    assert gpu.x.is_cuda and gpu.subset([1, 2]).x.is_cuda

    def epoch(split):
        gen = torch.Generator().manual_seed(3)
        return [(x.cpu(), y.cpu()) for x, y in iterate_batches(
            split, 16, shuffle=True, generator=gen, augment=random_crop_flip(2))]

    for (xc, yc), (xg, yg) in zip(epoch(d.train), epoch(gpu), strict=True):
        assert torch.equal(yc, yg) and torch.equal(xc, xg)
    cuda_gen = torch.Generator(device="cuda").manual_seed(0)
    ys = torch.cat([y for _, y in iterate_batches(gpu, 10, shuffle=True, generator=cuda_gen,
                                                  augment=random_crop_flip(2))])
    assert ys.is_cuda and torch.equal(ys.sort().values.cpu(), d.train.y.sort().values)


def test_every_split_and_augmented_batch_has_standard_nchw_strides():
    """With one channel, channels_last strides pass `is_contiguous()`; the convolution then
    outputs channels_last and the CPU pool kernels never run (robustlab.data.layout)."""
    from robustlab.data import ArraySplit
    from robustlab.data.batches import random_crop_flip
    from robustlab.data.layout import standard_strides

    x = torch.empty_strided((8, 1, 6, 6), (36, 1, 6, 1)).uniform_()
    assert x.is_contiguous() and x.stride() != standard_strides(x.shape)
    split = ArraySplit(x, torch.zeros(8, dtype=torch.long))
    assert split.x.stride() == (36, 36, 6, 1) and torch.equal(split.x, x)
    out = random_crop_flip(2)(split.x, torch.Generator().manual_seed(0))
    assert out.stride() == (36, 36, 6, 1)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1)
    assert conv(split.x).is_contiguous()  # NCHW activations: the pool kernels apply
