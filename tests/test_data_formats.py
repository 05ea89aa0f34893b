"""Data layer: CIFAR-10 binary format and image folders, written by the tests themselves."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.data import DataError, checksums, load_dataset
from robustlab.data import download as download_mod
from robustlab.data.cifar import RECORD
from robustlab.data.splitting import split_indices

# ----------------------------------------------------------------------------- CIFAR-10


def _cifar_records(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, bytes]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    data = b"".join(bytes([labels[i]]) + pixels[i].tobytes() for i in range(n))
    assert len(data) == n * 3073
    return pixels, labels, data


def _write_cifar(folder: Path, n_per_file=3, n_test=4) -> tuple[np.ndarray, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x, y, data = _cifar_records(n_per_file, i)
        (folder / f"data_batch_{i}.bin").write_bytes(data)
        xs.append(x)
        ys.append(y)
    tx, ty, data = _cifar_records(n_test, 99)
    (folder / "test_batch.bin").write_bytes(data)
    (folder / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    return np.concatenate(xs), np.concatenate(ys), tx, ty


def test_cifar_binary_read_back_exactly(tmp_path):
    x, y, tx, ty = _write_cifar(tmp_path / "cifar10" / "cifar-10-batches-bin")
    d = load_dataset("cifar10", tmp_path, val_size=5, split_seed=2, verify=False)
    assert d.source["root"] == str(tmp_path / "cifar10" / "cifar-10-batches-bin")
    assert (len(d.train), len(d.val), len(d.test)) == (10, 5, 4)
    assert d.train.x.shape[1:] == (3, 32, 32) and d.train.x.dtype == torch.float32
    tr, va = split_indices(15, 5, 2)
    full = torch.from_numpy(x.astype(np.float32) / 255)
    assert torch.equal(d.train.x, full[tr]) and torch.equal(d.val.x, full[va])
    assert torch.equal(d.train.y, torch.from_numpy(y.astype(np.int64))[tr])
    assert torch.equal(d.test.x, torch.from_numpy(tx.astype(np.float32) / 255))
    assert torch.equal(d.test.y, torch.from_numpy(ty.astype(np.int64)))
    # Channel order: record bytes 1..1024 are red, i.e. channel 0.
    raw = (tmp_path / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").read_bytes()
    assert torch.equal((d.test.x[0, 0] * 255).round().to(torch.uint8).flatten(),
                       torch.tensor(list(raw[1:1025]), dtype=torch.uint8))
    assert d.info.class_names == tuple(f"c{i}" for i in range(10))
    assert d.info.model_kwargs()["mean"] == (0.4914, 0.4822, 0.4465)


def test_cifar_pickle_version_is_named_not_just_missing(tmp_path):
    """torchvision's layout (cifar-10-batches-py/ with pickled batches) is refused, and the
    error says what was found, why it is not read and what to get instead."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (folder / name).write_bytes(b"\x80\x04not read")
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", tmp_path)
    msg = str(exc.value)
    assert f"Found {folder}" in msg and "python-pickle version" in msg
    assert "cifar-10-binary.tar.gz" in msg and "--download" in msg


def test_cifar_verify_requires_official_counts(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-bin")
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", tmp_path)
    msg = str(exc.value)
    assert "data_batch_1.bin" in msg and "expected 10000 records" in msg and "found 3" in msg


def test_cifar_truncated_and_bad_label(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    _write_cifar(folder)
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", tmp_path, verify=False)
    msg = str(exc.value)
    assert "data_batch_3.bin" in msg and f"multiple of {RECORD} bytes" in msg
    assert f"found {3 * RECORD - 10} bytes (2 records + {RECORD - 10} bytes)" in msg
    _write_cifar(folder)
    data = bytearray((folder / "test_batch.bin").read_bytes())
    data[RECORD] = 10  # label of record 1
    (folder / "test_batch.bin").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"test_batch.bin: expected labels in \[0, 9\], found 10 "
                                        r"in record 1"):
        load_dataset("cifar10", tmp_path, verify=False)


def _cifar_archive(tmp_path: Path, extra: str | None = None) -> Path:
    src = tmp_path / "src" / "cifar-10-batches-bin"
    _write_cifar(src)
    archive = tmp_path / "served.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-bin")
        if extra:
            info = tarfile.TarInfo(extra)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    return archive


def test_cifar_download_md5_verified_and_extracted(tmp_path, monkeypatch):
    archive = _cifar_archive(tmp_path)
    calls = []

    def fake_fetch(url: str, dest: Path) -> None:
        calls.append(url)
        dest.write_bytes(archive.read_bytes())

    monkeypatch.setattr(download_mod, "fetch", fake_fetch)
    # The real archive's MD5 does not match our small archive: refused, nothing left behind.
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10", tmp_path / "data", download=True, verify=False)
    msg = str(exc.value)
    assert "checksum mismatch" in msg and "c32a1d4ab5d03f1284b67883e8d87530" in msg
    assert hashlib.md5(archive.read_bytes()).hexdigest() in msg
    assert list((tmp_path / "data" / "cifar10").iterdir()) == []
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    # With the checksum of our archive, it is fetched, verified and extracted.
    monkeypatch.setattr(checksums, "CIFAR10_BINARY_MD5", hashlib.md5(archive.read_bytes())
                        .hexdigest())
    d = load_dataset("cifar10", tmp_path / "data", download=True, verify=False, val_size=0)
    target = tmp_path / "data" / "cifar10"
    assert d.source["root"] == str(target / "cifar-10-batches-bin")
    assert sorted(p.name for p in target.iterdir()) == ["cifar-10-batches-bin",
                                                        "cifar-10-binary.tar.gz"]
    assert len(d.train) == 15 and len(d.test) == 4


def test_cifar_archive_with_unsafe_member_is_refused(tmp_path, monkeypatch):
    archive = _cifar_archive(tmp_path, extra="../evil.txt")
    monkeypatch.setattr(download_mod, "fetch", lambda url, dest: dest.write_bytes(
        archive.read_bytes()))
    monkeypatch.setattr(checksums, "CIFAR10_BINARY_MD5", hashlib.md5(archive.read_bytes())
                        .hexdigest())
    with pytest.raises(DataError, match=r"unexpected member '../evil.txt'"):
        load_dataset("cifar10", tmp_path / "data", download=True, verify=False)
    assert not (tmp_path / "data" / "evil.txt").exists()
    assert not (tmp_path / "data" / "cifar10" / "cifar-10-batches-bin").exists()


# ----------------------------------------------------------------------------- image folders

COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "fox": (0, 0, 255)}


def _write_image(path: Path, colour, size=(40, 20), fmt="PNG"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


def _write_tree(folder: Path, n=3, fmt="PNG", ext=".png"):
    for name, colour in COLOURS.items():
        for i in range(n):
            _write_image(folder / name / f"{i}{ext}", colour, fmt=fmt)


def _colour_of(x: torch.Tensor) -> tuple[int, int, int]:
    return tuple(int(v) for v in (x.mean(dim=(1, 2)) * 255).round())


def test_imagefolder_train_val_layout_resize_and_labels(tmp_path):
    _write_tree(tmp_path / "train", n=10)
    _write_tree(tmp_path / "val", n=2)
    d = load_dataset("imagefolder", tmp_path, image_size=16)
    assert d.info.class_names == ("cat", "dog", "fox") and d.info.channels == 3
    assert d.info.mean == (0.485, 0.456, 0.406)
    # ImageNet convention: val/ is the held-out test split; val is 10% carved from train.
    assert (len(d.train), len(d.val), len(d.test)) == (27, 3, 6)
    assert d.test.x.shape == (6, 3, 16, 16) and d.source["test_from"] == "val folder"
    for split in (d.train, d.val, d.test):
        for x, y in zip(split.x, split.y, strict=True):
            assert _colour_of(x) == list(COLOURS.values())[int(y)]
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
    serial = load_dataset("imagefolder", tmp_path, image_size=16, workers=1)
    assert torch.equal(serial.train.x, d.train.x) and torch.equal(serial.test.y, d.test.y)


def test_imagefolder_centre_crop(tmp_path):
    img = Image.new("RGB", (30, 10), (255, 0, 0))
    img.paste((0, 255, 0), (10, 0, 20, 10))  # middle third green
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    for split in ("train", "val", "test"):
        img.save(tmp_path / split / "a" / "x.png")
        _write_image(tmp_path / split / "b" / "y.png", (0, 0, 255))  # a second class
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    d = load_dataset("imagefolder", tmp_path, image_size=10)
    assert (len(d.train), len(d.val), len(d.test)) == (2, 2, 2)
    assert d.source["layout"] == "test+train+val"
    expected = torch.zeros(3, 10, 10)
    expected[1] = 1.0
    assert int(d.test.y[0]) == 0 and torch.equal(d.test.x[0], expected)
    with pytest.raises(DataError, match=r"val_size=None, found 3"):
        load_dataset("imagefolder", tmp_path, image_size=10, val_size=3)


def test_imagefolder_class_selection_single_folder_and_jpeg(tmp_path):
    _write_tree(tmp_path / "all", n=10, fmt="JPEG", ext=".JPG")
    d = load_dataset("imagefolder", tmp_path / "all", image_size=(12, 8),
                     classes=["fox", "cat"], val_size=2, test_size=4)
    assert d.info.class_names == ("fox", "cat") and d.info.num_classes == 2
    assert (len(d.train), len(d.val), len(d.test)) == (14, 2, 4)
    assert d.train.x.shape[1:] == (3, 12, 8)
    assert "single folder" in d.source["layout"]
    for split in (d.train, d.val, d.test):
        for x, y in zip(split.x, split.y, strict=True):
            want = COLOURS[d.info.class_names[int(y)]]
            assert max(abs(a - b) for a, b in zip(_colour_of(x), want, strict=True)) <= 3
    # The test carve and the val carve are deterministic and disjoint.
    d2 = load_dataset("imagefolder", tmp_path / "all", image_size=(12, 8),
                      classes=["fox", "cat"], val_size=2, test_size=4, max_per_class=10)
    assert torch.equal(d.test.x, d2.test.x) and torch.equal(d.val.y, d2.val.y)
    d3 = load_dataset("imagefolder", tmp_path / "all", image_size=4, max_per_class=2,
                      val_size=0, test_size=0.5)
    assert len(d3.train) + len(d3.test) == 6 and len(d3.test) == 3


def test_imagefolder_errors(tmp_path):
    _write_tree(tmp_path / "train", n=2)
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", tmp_path, classes=["cat", "wolf"])
    assert "missing: wolf" in str(exc.value) and "cat, dog, fox" in str(exc.value)
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken.png: expected an image Pillow can decode"):
        load_dataset("imagefolder", tmp_path, image_size=8)
    with pytest.raises(DataError) as exc:
        load_dataset("imagefolder", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(exc.value) and "ROBUSTLAB_DATA" in str(exc.value)
    with pytest.raises(DataError, match="download=True is not supported"):
        load_dataset("imagefolder", tmp_path, download=True)
    with pytest.raises(DataError, match=r"image_size: expected an integer >= 1 or \(H, W\)"):
        load_dataset("imagefolder", tmp_path, image_size=0)
