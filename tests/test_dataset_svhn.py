"""SVHN (format 2, cropped digits) from its official MATLAB v5 files, written by the tests with
scipy.io.savemat in the same format (compressed v5, X uint8 [32, 32, 3, N], y [N, 1])."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import torch

from robustlab.data import DataError, checksums, load_dataset
from robustlab.data import download as download_mod
from robustlab.models import create_model

COUNTS = {"train_32x32.mat": 24, "test_32x32.mat": 10, "extra_32x32.mat": 6}


def _arrays(n: int, seed: int, y_dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """X uint8 [32, 32, 3, n] and y [n, 1] with every label 1..10 (10 = digit 0)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = ((np.arange(n) + seed) % 10 + 1).astype(y_dtype).reshape(n, 1)
    return x, y


def write_mat(path: Path, n: int, seed: int, **override: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y = _arrays(n, seed)
    scipy.io.savemat(path, {"X": x, "y": y, **override}, format="5", do_compression=True)


def write_files(root: Path, extra: bool = False) -> tuple[Path, dict[str, Any]]:
    """`root/svhn/{train,test}_32x32.mat` (+ `extra_32x32.mat`) in the official format;
    returns (root, options) for `load_dataset("svhn", ...)`."""
    for seed, (name, n) in enumerate(COUNTS.items()):
        if extra or name != "extra_32x32.mat":
            write_mat(root / "svhn" / name, n, seed)
    return root, {"verify": False, "val_size": 4}


def test_images_labels_and_the_10_to_0_mapping(tmp_path):
    root, options = write_files(tmp_path)
    d = load_dataset("svhn", root, **{**options, "val_size": 0})
    x, y = _arrays(10, 1)
    assert d.test.x.shape == (10, 3, 32, 32) and d.test.x.dtype == torch.float32
    # [H, W, C, N] -> [N, C, H, W]: pixel (row r, column c, channel k) of image i
    expected = torch.from_numpy(x.transpose(3, 2, 0, 1).astype(np.float32) / 255)
    assert torch.equal(d.test.x, expected)
    assert round(float(d.test.x[3, 2, 5, 7]) * 255) == x[5, 7, 2, 3]
    assert d.test.y.dtype == torch.int64
    assert d.test.y.tolist() == [int(v) % 10 for v in y.reshape(-1)]
    assert 10 in y and 0 in d.test.y.tolist() and int(d.test.y.max()) <= 9
    assert len(d.train) == 24 and 0.0 <= float(d.train.x.min()) <= float(d.train.x.max()) <= 1
    info = d.info
    assert info.class_names == tuple("0123456789") and info.augment == "none"
    model = create_model("resnet18", **info.model_kwargs())  # as `train --model resnet18` does
    assert model(d.test.x[:2]).shape == (2, 10)


def test_extra_option_adds_extra_32x32_to_training(tmp_path):
    root, options = write_files(tmp_path, extra=True)
    d = load_dataset("svhn", root, **{**options, "val_size": 0}, extra=True)
    assert len(d.train) == 24 + 6 and len(d.test) == 10
    x, _ = _arrays(6, 2)
    assert torch.equal(d.train.x[24:], torch.from_numpy(x.transpose(3, 2, 0, 1)
                                                        .astype(np.float32) / 255))
    assert d.source["extra"] is True
    (tmp_path / "svhn" / "extra_32x32.mat").unlink()
    with pytest.raises(DataError, match="extra_32x32.mat"):
        load_dataset("svhn", root, **options, extra=True)


def test_double_labels_as_matlab_writes_them_are_read(tmp_path):
    root, options = write_files(tmp_path)
    x, y = _arrays(10, 1, y_dtype=np.float64)
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": x, "y": y}, format="5")
    d = load_dataset("svhn", root, **options)
    assert d.test.y.tolist() == [int(v) % 10 for v in y.reshape(-1)]


def test_verify_requires_the_official_counts(tmp_path):
    root, _ = write_files(tmp_path)
    with pytest.raises(DataError) as exc:
        load_dataset("svhn", root)
    assert str(exc.value) == (f"{tmp_path / 'svhn' / 'train_32x32.mat'}: expected 73257 images "
                              f"as in the official file, found 24; pass verify=False to load "
                              f"a reduced copy on purpose")


def _one_line(root: Path, options: dict[str, Any]) -> str:
    with pytest.raises(DataError) as exc:
        load_dataset("svhn", root, **options)
    assert len(str(exc.value).splitlines()) == 1, str(exc.value)
    return str(exc.value)


def test_truncated_corrupt_and_wrong_files_give_one_clear_line(tmp_path):
    root, options = write_files(tmp_path)
    path = tmp_path / "svhn" / "train_32x32.mat"
    path.write_bytes(path.read_bytes()[:3000])
    assert _one_line(root, options) == (f"{path}: expected the variables X and y (SVHN format "
                                        f"2), found X (a truncated file, or not SVHN?)")
    x, y = _arrays(24, 0)
    scipy.io.savemat(path, {"y": y, "X": x}, format="5", do_compression=True)
    path.write_bytes(path.read_bytes()[:-1000])  # both headers there, X's data cut short
    assert _one_line(root, options).startswith(
        f"{path}: expected a MATLAB v5 file holding X and y (SVHN format 2), found one scipy "
        f"cannot read: ")
    path.write_bytes(b"not a MATLAB file at all" * 20)
    assert _one_line(root, options).startswith(f"{path}: expected a MATLAB v5 file")
    write_mat(path, 5, 0, X=np.zeros((28, 28, 3, 5), np.uint8))
    assert _one_line(root, options) == (f"{path}: expected X of class uint8 and shape "
                                        f"[32, 32, 3, N] with 1 <= N <= 1000000, found uint8 "
                                        f"[28, 28, 3, 5]")
    write_mat(path, 5, 0, X=np.zeros((32, 32, 3, 5), np.float64))
    assert "found double [32, 32, 3, 5]" in _one_line(root, options)
    write_mat(path, 5, 0, y=np.ones((4, 1), np.uint8))
    assert _one_line(root, options) == (f"{path}: expected y of a numeric class and shape "
                                        f"[5, 1], found uint8 [4, 1]")
    scipy.io.savemat(path, {"X": _arrays(5, 0)[0]}, format="5")
    assert _one_line(root, options) == (f"{path}: expected the variables X and y (SVHN format "
                                        f"2), found X (a truncated file, or not SVHN?)")
    write_mat(path, 5, 0, y=np.array([[1], [0], [3], [4], [5]], np.uint8))
    assert _one_line(root, options) == (f"{path}: expected labels y in 1..10 (10 = digit 0), "
                                        f"found 0 at index 1")


def test_missing_files_name_them_and_the_fixes(tmp_path):
    msg = str(pytest.raises(DataError, load_dataset, "svhn", tmp_path).value)
    assert "dataset 'svhn' not found: expected the MATLAB files train_32x32.mat, " \
           "test_32x32.mat" in msg and "--download" in msg


def test_missing_scipy_names_the_extra(tmp_path, monkeypatch):
    root, options = write_files(tmp_path)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # `import scipy.io` now fails
    assert _one_line(root, options) == (
        "svhn: reading its MATLAB files needs scipy, which is not installed; expected the "
        "optional extra: pip install 'robustlab[svhn]'")


def test_download_refuses_a_wrong_checksum_and_keeps_a_verified_file(tmp_path, monkeypatch):
    served = tmp_path / "served"
    write_files(served)
    calls = []

    def fake_fetch(url: str, dest: Path) -> None:
        calls.append(url)
        dest.write_bytes((served / "svhn" / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(download_mod, "fetch", fake_fetch)
    with pytest.raises(DataError) as exc:
        load_dataset("svhn", tmp_path / "data", download=True, verify=False)
    msg = str(exc.value)
    assert "checksum mismatch for train_32x32.mat" in msg
    assert "e26dedcc434d2e4c54c9b2d4a06d8373" in msg
    assert calls == ["http://ufldl.stanford.edu/housenumbers/train_32x32.mat"]
    assert list((tmp_path / "data" / "svhn").iterdir()) == []
    digests = {name: hashlib.md5((served / "svhn" / name).read_bytes()).hexdigest()
               for name in ("train_32x32.mat", "test_32x32.mat")}
    monkeypatch.setattr(checksums, "SVHN_MD5", digests)
    d = load_dataset("svhn", tmp_path / "data", download=True, verify=False, val_size=0)
    assert sorted(p.name for p in (tmp_path / "data" / "svhn").iterdir()) == sorted(digests)
    assert (len(d.train), len(d.test)) == (24, 10)
