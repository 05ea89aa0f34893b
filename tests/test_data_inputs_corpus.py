"""Data inputs the bad-input corpus found accepted silently (issue #32): each is now one
`DataError` line naming the file / field / value and what was expected."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.data import DataError, load_dataset
from robustlab.data.in_memory import as_split, splits_from_data

# ----------------------------------------------------------------------------- MNIST

def _idx(array: np.ndarray) -> bytes:
    magic = (0x08 << 8) | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _mnist(folder: Path, n_test: int = 20) -> Path:
    folder.mkdir(parents=True)
    files = {"train-images-idx3-ubyte": np.zeros((40, 28, 28)),
             "train-labels-idx1-ubyte": np.arange(40) % 10,
             "t10k-images-idx3-ubyte": np.zeros((n_test, 28, 28)),
             "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    for stem, array in files.items():
        (folder / f"{stem}.gz").write_bytes(gzip.compress(_idx(np.asarray(array))))
    return folder


def test_mnist_test_file_with_zero_images_is_refused_naming_it(tmp_path):
    assert len(load_dataset("mnist", _mnist(tmp_path / "ok"), verify=False, val_size=10).test) \
        == 20
    root = _mnist(tmp_path / "empty", n_test=0)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", root, verify=False, val_size=10)
    msg = str(exc.value)
    assert msg.startswith(str(root / "t10k-images-idx3-ubyte.gz")) and "0 images" in msg
    assert "\n" not in msg


def test_mnist_download_must_be_a_bool(tmp_path):
    with pytest.raises(DataError, match=r"^mnist download: expected true or false, got 'yes'$"):
        load_dataset("mnist", _mnist(tmp_path / "d"), verify=False, download="yes")


# ----------------------------------------------------------------------------- image folders

def _tree(root: Path, classes=("cat", "dog", "fox"), splits=(("train", 3), ("val", 2))) -> Path:
    for split, n in splits:
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (12, 10), (80 * c, 20 * i, 0)).save(root / split / cls /
                                                                      f"{i}.png")
    return root


def _load(root: Path, **kw):
    return load_dataset("imagefolder", root, **{"image_size": 8, "workers": 1, "val_size": 2,
                                                **kw})


def test_imagefolder_empty_class_folder_is_refused_naming_it(tmp_path):
    root = _tree(tmp_path / "imgs")
    shutil.rmtree(root / "train" / "dog")
    (root / "train" / "dog").mkdir()  # would silently make fox label 1 instead of 2
    with pytest.raises(DataError) as exc:
        _load(root)
    assert str(exc.value).startswith(f"{root / 'train'}: class folder(s) dog hold no images")
    # choosing the other classes explicitly is fine, and keeps their labels in that order
    d = _load(root, classes=["cat", "fox"])
    assert d.info.class_names == ("cat", "fox") and sorted(set(d.test.y.tolist())) == [0, 1]


def test_imagefolder_empty_class_folder_in_val_is_refused(tmp_path):
    root = _tree(tmp_path / "imgs")
    shutil.rmtree(root / "val" / "fox")
    (root / "val" / "fox").mkdir()
    with pytest.raises(DataError, match=r"val: class folder\(s\) fox hold no images"):
        _load(root)


def test_imagefolder_val_classes_must_equal_trains(tmp_path):
    root = _tree(tmp_path / "imgs")
    (root / "val" / "fox").rename(root / "val" / "wolf")
    with pytest.raises(DataError) as exc:
        _load(root)
    msg = str(exc.value)
    assert msg.startswith(f"{root / 'val'}: expected the class folders of {root / 'train'}")
    assert "missing: fox" in msg and "not in train/: wolf" in msg
    (root / "val" / "wolf").rename(root / "val" / "fox")
    assert _load(root).info.class_names == ("cat", "dog", "fox")


def test_imagefolder_test_folder_missing_a_class_is_refused(tmp_path):
    root = _tree(tmp_path / "imgs", splits=(("train", 3), ("val", 1), ("test", 1)))
    shutil.rmtree(root / "test" / "cat")
    with pytest.raises(DataError, match=r"test: expected the class folders .* missing: cat$"):
        _load(root, val_size=None)


def test_imagefolder_one_class_is_refused(tmp_path):
    root = _tree(tmp_path / "imgs", classes=("cat",))
    with pytest.raises(DataError, match=r"train: expected at least 2 classes, found 1 \(cat\)"):
        _load(root)
    two = _tree(tmp_path / "two", classes=("cat", "dog"))
    with pytest.raises(DataError, match=r"expected at least 2 classes, found 1 \(dog\)"):
        _load(two, classes=["dog"])
    assert _load(two).info.num_classes == 2


def test_imagefolder_download_and_split_seed_checked_first(tmp_path):
    root = _tree(tmp_path / "imgs")
    with pytest.raises(DataError, match=r"^imagefolder download: expected true or false"):
        _load(root, download="yes")
    with pytest.raises(DataError, match=r"^split_seed: expected an integer in \[0, 2\*\*63 - 1\]"
                                        r", got -1$"):
        _load(root, split_seed=-1)


# ----------------------------------------------------------------------------- synthetic, seeds

@pytest.mark.parametrize("seed", [-1, True, 1.0, 2**63, "0"])
def test_split_seed_out_of_range_is_refused(seed):
    with pytest.raises(DataError, match=r"^split_seed: expected an integer"):
        load_dataset("synthetic", n_train=60, n_test=20, split_seed=seed)
    x, y = torch.rand(10, 1, 4, 4), torch.arange(10) % 2
    with pytest.raises(DataError, match=r"^split_seed: "):
        splits_from_data((x, y), split_seed=seed)


def test_split_seed_in_range_still_splits_deterministically():
    a = load_dataset("synthetic", n_train=60, n_test=20, split_seed=2**63 - 1)
    b = load_dataset("synthetic", n_train=60, n_test=20, split_seed=2**63 - 1)
    assert torch.equal(a.val.x, b.val.x) and a.source["split_seed"] == 2**63 - 1


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_synthetic_download_must_be_a_bool(value):
    with pytest.raises(DataError, match=r"^synthetic download: expected true or false"):
        load_dataset("synthetic", n_train=60, n_test=20, download=value)
    assert len(load_dataset("synthetic", n_train=60, n_test=20, download=True).train) == 54


# ----------------------------------------------------------------------------- DataLoaders

def test_loader_yielding_triples_is_refused():
    x, y = torch.rand(16, 1, 4, 4), torch.arange(16) % 2
    with pytest.raises(DataError, match=r"^train: expected \(x, y\) batches, got 3 items in "
                                        r"batch 0$"):
        as_split([(x[:8], y[:8], y[:8])], "train")
    with pytest.raises(DataError, match=r"got 1 items in batch 2$"):
        as_split([(x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:],)], "train")
    assert len(as_split([(x[:8], y[:8]), (x[8:], y[8:])], "train")) == 16


def test_loader_batches_of_different_image_shapes_name_the_batch():
    x, y = torch.rand(24, 1, 4, 4), torch.arange(24) % 2
    batches = [(x[:8], y[:8]), (x[8:16], y[8:16]), (x[16:, :, :, :3], y[16:])]
    with pytest.raises(DataError) as exc:
        as_split(batches, "val")
    assert str(exc.value) == ("val batch 2 x: images of shape (1, 4, 3), but batch 0's are "
                              "(1, 4, 4); expected one image shape")
    # a smaller last batch (drop_last=False) is one image shape: fine
    assert len(as_split([(x[:8], y[:8]), (x[8:11], y[8:11])], "val")) == 11


def test_train_api_refuses_triples_with_one_line(tmp_path):
    import robustlab

    x, y = torch.rand(16, 1, 8, 8), torch.arange(16) % 2
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    with pytest.raises(DataError, match=r"expected \(x, y\) batches, got 3 items"):
        robustlab.train(net, [(x[i:i + 4], y[i:i + 4], y[i:i + 4]) for i in (0, 4, 8, 12)],
                        epochs=1,
                        batch_size=8, out_dir=str(tmp_path / "run"), device="cpu",
                        progress=False, val_size=4)
    assert not (tmp_path / "run").exists()
