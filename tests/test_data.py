"""Data layer: real MNIST / Fashion-MNIST, IDX validation, root resolution, downloads, splits."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_files import idx_bytes as _idx_bytes
from dataset_files import write_idx_folder as _write_mnist

from robustlab.data import (
    ArraySplit,
    DataError,
    DatasetInfo,
    DatasetSplits,
    list_datasets,
    load_dataset,
    roots,
)
from robustlab.data import download as download_mod
from robustlab.data.checksums import FASHION_MNIST_SHA256, MNIST_SHA256
from robustlab.data.splitting import split_indices
from robustlab.registry import DATASETS

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _load_real(name: str, **kw) -> DatasetSplits:
    """Load a real dataset from the normal search path; fail (not skip) under CI if missing."""
    try:
        return load_dataset(name, **kw)
    except DataError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the real {name} data is missing:\n{exc}")
        pytest.skip(f"real {name} data not available (set ROBUSTLAB_DATA): {exc}")


@pytest.fixture(scope="module")
def mnist() -> DatasetSplits:
    return _load_real("mnist")


@pytest.fixture(scope="module")
def fashion() -> DatasetSplits:
    return _load_real("fashion-mnist")


# ----------------------------------------------------------------------------- real data


def test_registry_and_list():
    for name in ("mnist", "fashion-mnist", "cifar10", "imagefolder", "synthetic"):
        assert name in DATASETS
        assert name in list_datasets()


def test_real_mnist_shapes_ranges_and_counts(mnist):
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (55000, 5000, 10000)
    for split in (mnist.train, mnist.val, mnist.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.x.shape[1:] == (1, 28, 28)
        assert float(split.x.min()) == 0.0 and float(split.x.max()) == 1.0
    all_train_y = torch.cat([mnist.train.y, mnist.val.y])
    assert torch.bincount(all_train_y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.test.y, minlength=10).tolist() == MNIST_TEST_COUNTS
    # The normalisation stats in DatasetInfo describe the data (which itself stays in [0, 1]).
    full_mean = float(torch.cat([mnist.train.x, mnist.val.x]).mean())
    assert abs(full_mean - 0.1307) < 5e-4
    assert mnist.info.model_kwargs() == dict(num_classes=10, in_channels=1, mean=(0.1307,),
                                             std=(0.3081,), image_size=(28, 28))
    assert mnist.source["verified_sha256"] is True
    assert len(mnist.source["files"]) == 4
    assert all(Path(f).is_file() for f in mnist.source["files"])


def test_real_fashion_mnist(fashion):
    assert (len(fashion.train) + len(fashion.val), len(fashion.test)) == (60000, 10000)
    all_y = torch.cat([fashion.train.y, fashion.val.y])
    assert torch.bincount(all_y, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(fashion.test.y, minlength=10).tolist() == [1000] * 10
    # Class balance of the seeded val split: roughly 500 per class.
    val_counts = torch.bincount(fashion.val.y, minlength=10)
    assert int(val_counts.min()) > 400 and int(val_counts.max()) < 600
    assert abs(float(fashion.test.x.mean()) - 0.2860) < 5e-3
    assert fashion.info.class_names[9] == "Ankle boot"
    assert fashion.info.mean == (0.2860,) and fashion.info.std == (0.3530,)


def test_real_mnist_split_determinism_and_val_size_zero(mnist):
    c = _load_real("mnist", val_size=0)
    assert len(c.val) == 0 and c.val.x.shape == (0, 1, 28, 28) and len(c.train) == 60000
    assert torch.equal(c.test.x, mnist.test.x)  # test split untouched by val_size / seed
    # Each split is a deterministic function of (val_size, split_seed) only.
    tr, va = split_indices(60000, 5000, 0)
    assert torch.equal(mnist.val.x, c.train.x[va]) and torch.equal(mnist.train.y, c.train.y[tr])


def test_split_indices_disjoint_cover_and_seeded():
    tr, va = split_indices(1000, 100, 7)
    assert len(va) == 100 and len(tr) == 900
    assert torch.equal(torch.cat([tr, va]).sort().values, torch.arange(1000))
    tr2, va2 = split_indices(1000, 100, 7)
    assert torch.equal(va, va2) and torch.equal(tr, tr2)
    _, va3 = split_indices(1000, 100, 8)
    assert not torch.equal(va, va3)


def test_val_size_validation():
    with pytest.raises(DataError,
                       match=r"val_size for 'synthetic': expected an integer in \[0, 89\], got 90"):
        load_dataset("synthetic", n_train=90, val_size=90)
    with pytest.raises(DataError,
                       match=r"val_size for 'synthetic': expected a fraction in \[0, 1\), got 1.5"):
        load_dataset("synthetic", val_size=1.5)
    d = load_dataset("synthetic", n_train=200, val_size=0.25, image_size=8)
    assert (len(d.train), len(d.val)) == (150, 50)


def test_unknown_option_is_rejected():
    with pytest.raises(DataError, match=r"^mnist: unknown option\(s\) colour for dataset 'mnist'; "
                                        r"known: verify$"):
        load_dataset("mnist", colour=True)


# ----------------------------------------------------------------------------- IDX files


def test_tiny_idx_roundtrip_both_layouts_gz_and_raw(tmp_path):
    _write_mnist(tmp_path / "a" / "mnist")
    _write_mnist(tmp_path / "b", gz=False)
    a = load_dataset("mnist", tmp_path / "a", val_size=2, verify=False)
    b = load_dataset("mnist", tmp_path / "b", val_size=2, verify=False)
    assert a.source["root"] == str(tmp_path / "a" / "mnist")
    assert b.source["root"] == str(tmp_path / "b")
    assert (len(a.train), len(a.val), len(a.test)) == (4, 2, 4)
    for s1, s2 in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert torch.equal(s1.x, s2.x) and torch.equal(s1.y, s2.y)
    rng = np.random.default_rng(0)
    expected = torch.from_numpy(rng.integers(0, 256, (6, 28, 28)).astype(np.float32) / 255)
    tr, va = split_indices(6, 2, 0)
    assert torch.allclose(a.val.x[:, 0], expected[va]) and torch.allclose(a.train.x[:, 0],
                                                                        expected[tr])


def test_wrong_magic(tmp_path):
    bad = _idx_bytes(np.arange(6) % 10, magic=0x00000803)
    _write_mnist(tmp_path, **{"train-labels-idx1-ubyte": bad})
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, verify=False, val_size=0)
    msg = str(exc.value)
    assert "train-labels-idx1-ubyte.gz" in msg and "magic" in msg
    assert "expected 0x00000801" in msg and "found 0x00000803" in msg


def test_truncated_idx(tmp_path):
    full = _idx_bytes(np.zeros((6, 28, 28)))
    _write_mnist(tmp_path, gz=False, **{"train-images-idx3-ubyte": full[:-100]})
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, verify=False, val_size=0)
    msg = str(exc.value)
    assert "train-images-idx3-ubyte" in msg and "truncated" in msg
    assert f"expected {len(full)} bytes" in msg and f"found {len(full) - 100} bytes" in msg


def test_truncated_gzip(tmp_path):
    _write_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: truncated gzip"):
        load_dataset("mnist", tmp_path, verify=False, val_size=0)


def test_count_mismatch(tmp_path):
    _write_mnist(tmp_path, **{"t10k-labels-idx1-ubyte": _idx_bytes(np.arange(3))})
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, verify=False, val_size=0)
    msg = str(exc.value)
    assert "count mismatch" in msg and "4 images" in msg and "3 labels" in msg
    assert "t10k-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg


def test_label_out_of_range(tmp_path):
    _write_mnist(tmp_path, **{"t10k-labels-idx1-ubyte": _idx_bytes(np.array([0, 1, 2, 12]))})
    with pytest.raises(DataError, match=r"expected labels in \[0, 9\], found 12"):
        load_dataset("mnist", tmp_path, verify=False, val_size=0)


def test_checksum_mismatch_of_local_file(tmp_path):
    _write_mnist(tmp_path)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, val_size=0)
    msg = str(exc.value)
    assert "checksum mismatch" in msg and "train-images-idx3-ubyte.gz" in msg
    assert MNIST_SHA256["train-images-idx3-ubyte"][0] in msg
    ours = hashlib.sha256(gzip.decompress((tmp_path / "train-images-idx3-ubyte.gz")
                                          .read_bytes())).hexdigest()
    assert f"found {ours}" in msg


# ----------------------------------------------------------------------------- root resolution


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env var, an empty cache and no system locations: nothing can be found by accident."""
    monkeypatch.delenv("ROBUSTLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(roots, "SYSTEM_LOCATIONS", {"mnist": (str(tmp_path / "sys"),)})
    return tmp_path


def test_not_found_lists_every_place_and_the_fix(isolated, monkeypatch):
    monkeypatch.setenv("ROBUSTLAB_DATA", str(isolated / "env"))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist")
    msg = str(exc.value)
    for place in (isolated / "env" / "mnist", isolated / "env", isolated / "sys" / "mnist",
                  isolated / "sys", isolated / "cache" / "robustlab" / "mnist",
                  isolated / "cache" / "robustlab"):
        assert f"{place}  (" in msg
    assert "$ROBUSTLAB_DATA" in msg and "system location" in msg and "user cache" in msg
    assert "ROBUSTLAB_DATA=/path" in msg and "--data-dir" in msg
    assert "download=True" in msg and "--download" in msg
    assert "train-images-idx3-ubyte[.gz]" in msg
    # Order: env before system before cache.
    assert msg.index(str(isolated / "env")) < msg.index(str(isolated / "sys")) \
        < msg.index(str(isolated / "cache"))


def test_not_found_says_env_var_unset(isolated):
    with pytest.raises(DataError, match=r"\$ROBUSTLAB_DATA  \(not set\)"):
        load_dataset("mnist")


def test_explicit_root_searches_only_root(isolated, monkeypatch):
    _write_mnist(isolated / "env" / "mnist")
    monkeypatch.setenv("ROBUSTLAB_DATA", str(isolated / "env"))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", isolated / "elsewhere", verify=False)
    assert str(isolated / "env") not in str(exc.value)
    d = load_dataset("mnist", verify=False, val_size=0)  # env var found when root is None
    assert d.source["root"] == str(isolated / "env" / "mnist")


def test_resolution_order_system_then_cache(isolated):
    _write_mnist(isolated / "cache" / "robustlab" / "mnist")
    assert load_dataset("mnist", verify=False, val_size=0).source["root"] == \
        str(isolated / "cache" / "robustlab" / "mnist")
    _write_mnist(isolated / "sys")
    assert load_dataset("mnist", verify=False, val_size=0).source["root"] == str(isolated / "sys")


# ----------------------------------------------------------------------------- downloads


def _serve_from(folder: Path, calls: list[str]):
    def fake_fetch(url: str, dest: Path) -> None:
        calls.append(url)
        shutil.copyfile(folder / url.rsplit("/", 1)[1], dest)
    return fake_fetch


def test_download_verified_and_atomic(fashion, isolated, monkeypatch):
    """fashion-mnist 'download' served from the local copy: verified, then renamed into place."""
    src = Path(fashion.source["root"])
    calls: list[str] = []
    monkeypatch.setattr(download_mod, "fetch", _serve_from(src, calls))
    d = load_dataset("fashion-mnist", isolated / "dl", download=True)
    target = isolated / "dl" / "fashion-mnist"
    assert d.source["root"] == str(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f"{s}.gz" for s in FASHION_MNIST_SHA256)  # no temp files left
    assert len(calls) == 4 and all(c.startswith("http://fashion-mnist.s3") for c in calls)
    assert len(d.test) == 10000


def test_download_checksum_mismatch_leaves_nothing(isolated, monkeypatch):
    """The shared MNIST copy is re-compressed, so its .gz bytes differ from the official ones."""
    src = isolated / "served"
    _write_mnist(src)
    monkeypatch.setattr(download_mod, "fetch", _serve_from(src, []))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", isolated / "dl", download=True)
    msg = str(exc.value)
    assert "checksum mismatch" in msg and "ossci-datasets.s3.amazonaws.com/mnist/" in msg
    assert "expected sha256 " in msg and "found " in msg
    assert list((isolated / "dl" / "mnist").iterdir()) == []


def test_download_unreachable_mirrors_listed(isolated, monkeypatch):
    def offline(url: str, dest: Path) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(download_mod, "fetch", offline)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", isolated / "dl", download=True)
    msg = str(exc.value)
    assert "ossci-datasets.s3.amazonaws.com" in msg and "yann.lecun.com" in msg
    assert "network is unreachable" in msg
    assert list((isolated / "dl" / "mnist").iterdir()) == []


# ----------------------------------------------------------------------------- containers


def test_array_split_validation_subset_and_to():
    s = ArraySplit(torch.rand(5, 1, 2, 2), torch.arange(5))
    assert len(s) == 5 and len(s.subset(3)) == 3
    sub = s.subset([4, 0])
    assert torch.equal(sub.y, torch.tensor([4, 0])) and torch.equal(sub.x[0], s.x[4])
    assert s.to("cpu") is s
    mask = torch.tensor([True, False, True, False, False])
    assert torch.equal(s.subset(mask).y, torch.tensor([0, 2]))
    assert s.subset([]).x.shape == (0, 1, 2, 2)
    with pytest.raises(DataError, match="integer indices"):
        s.subset(torch.tensor([1.5]))
    with pytest.raises(DataError, match="float32"):
        ArraySplit(torch.rand(5, 2, 2, dtype=torch.float64), torch.arange(5))
    with pytest.raises(DataError, match="5 images but y has 4 labels"):
        ArraySplit(torch.rand(5, 1, 2, 2), torch.arange(4))
    with pytest.raises(DataError, match=r"subset n: expected an integer in \[0, 5\], got 6"):
        s.subset(6)
    with pytest.raises(DataError, match=r"subset n: expected an integer in \[0, 5\], got True"):
        s.subset(True)


def test_dataset_info_validation():
    with pytest.raises(DataError, match=r"mean: expected 3 values"):
        DatasetInfo("x", 2, 3, (4, 4), (0.5,), (0.2, 0.2, 0.2), ("a", "b"))
