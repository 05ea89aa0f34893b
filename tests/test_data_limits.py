"""Compressed and oversized inputs are read as streams with caps: a decompression bomb, a
corrupt header or a truncated file is a quick `DataError` naming the file, the size and the
cap, never gigabytes of memory."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from robustlab.data import DataError, cifar, idx, imagefolder, load_dataset
from robustlab.data import download as download_mod

MiB = 1 << 20
# One gzip member of 16 MiB of zeros is 16 KB; members concatenate into one valid gzip file.
ZEROS_MEMBER = gzip.compress(bytes(16 * MiB), compresslevel=9)
BOMB_MEMBERS = 32  # 512 MiB once decompressed, from a 0.5 MB file


def _header(magic: int, *dims: int) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def _bomb(path: Path, head: bytes) -> Path:
    """A gzip file: `head`, then 512 MiB of zeros (compressed about 1000:1)."""
    path.write_bytes(gzip.compress(head) + ZEROS_MEMBER * BOMB_MEMBERS)
    return path


def _expect_quick_data_error(fn, *args, **kwargs) -> str:
    """Run `fn`, expecting `DataError` within 2 s and under 32 MiB of Python/numpy allocations
    (tracemalloc peak; decompressing the bomb whole would be 512 MiB)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DataError) as exc:
            fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2.0
    assert peak < 32 * MiB, f"peak allocation {peak / MiB:.0f} MiB"
    assert "\n" not in str(exc.value)
    return str(exc.value)


# ----------------------------------------------------------------------------- IDX


def test_gzip_bomb_with_bad_magic_is_refused_from_the_header(tmp_path):
    path = _bomb(tmp_path / "train-images-idx3-ubyte.gz", b"\xff" * 16)
    msg = _expect_quick_data_error(idx.read_idx, path, 3)
    assert str(path) in msg and "wrong IDX magic" in msg and "found 0xffffffff" in msg


def test_huge_declared_shape_is_refused_before_reading(tmp_path):
    path = _bomb(tmp_path / "x.gz", _header(0x803, 2**32 - 1, 2**32 - 1, 2**32 - 1))
    msg = _expect_quick_data_error(idx.read_idx, path, 3)
    size = (2**32 - 1) ** 3
    assert str(path) in msg and str(size) in msg and f"cap of {idx.MAX_PAYLOAD_BYTES}" in msg


def test_gzip_bomb_behind_a_valid_header_reads_only_the_declared_bytes(tmp_path):
    path = _bomb(tmp_path / "x.gz", _header(0x803, 6, 28, 28) + bytes(6 * 28 * 28))
    msg = _expect_quick_data_error(idx.read_idx, path, 3)
    assert str(path) in msg and "too long" in msg and f"expected {16 + 6 * 28 * 28} bytes" in msg


def test_cap_is_a_parameter_and_names_file_size_and_cap(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(_header(0x803, 6, 28, 28) + bytes(6 * 28 * 28))
    with pytest.raises(DataError, match=rf"{path}: .*\(6, 28, 28\).*4704 bytes.*cap of 1000"):
        idx.read_idx(path, 3, max_bytes=1000)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_payload_names_expected_and_found_bytes(tmp_path, gz):
    data = _header(0x801, 100) + bytes(60)
    path = tmp_path / ("labels.gz" if gz else "labels")
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError) as exc:
        idx.read_idx(path, 1)
    msg = str(exc.value)
    assert str(path) in msg and "truncated IDX file" in msg
    assert "expected 108 bytes" in msg and f"found {len(data)} bytes" in msg


def test_truncated_header_and_cut_gzip_stream(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(_header(0x803, 6))  # 2 of the 3 sizes missing
    with pytest.raises(DataError, match="truncated IDX file: expected a 16-byte header, found 8"):
        idx.read_idx(path, 3)
    cut = tmp_path / "cut.gz"
    full = gzip.compress(_header(0x803, 6, 28, 28) + np.arange(4704, dtype=np.uint8).tobytes())
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError, match=rf"{cut}: truncated gzip file"):
        idx.read_idx(cut, 3)


def test_raw_file_too_long_names_its_size(tmp_path):
    path = tmp_path / "raw"
    path.write_bytes(_header(0x801, 4) + bytes(10))
    with pytest.raises(DataError, match=r"too long: .*expected 12 bytes, found 18 bytes"):
        idx.read_idx(path, 1)


@pytest.mark.parametrize("gz", [True, False])
def test_valid_small_file_round_trips(tmp_path, gz):
    array = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    data = _header(0x803, *array.shape) + array.tobytes()
    path = tmp_path / ("x.gz" if gz else "x")
    path.write_bytes(gzip.compress(data) if gz else data)
    item = idx.read_idx(path, 3)
    assert item.array.shape == (5, 28, 28) and item.array.dtype == np.uint8
    assert np.array_equal(item.array, array)
    assert item.sha256 == hashlib.sha256(data).hexdigest() == idx.payload_sha256(path)


def test_mnist_folder_with_a_bomb_fails_quickly(tmp_path):
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        _bomb(tmp_path / f"{stem}.gz", _header(0x803, 60000, 2**31, 28))
    msg = _expect_quick_data_error(load_dataset, "mnist", tmp_path, verify=False)
    assert "train-images-idx3-ubyte.gz" in msg and "cap of" in msg


def test_payload_digest_of_a_download_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "MAX_PAYLOAD_BYTES", 8 * MiB)
    path = _bomb(tmp_path / "t10k-images-idx3-ubyte.gz", _header(0x803, 10000, 28, 28))
    msg = _expect_quick_data_error(idx.payload_sha256, path)
    assert str(path) in msg and "too large" in msg and str(9 * MiB) in msg


# ----------------------------------------------------------------------------- CIFAR-10


def _tar_gz(path: Path, members: dict[str, bytes], declared: dict[str, int] | None = None):
    """A .tar.gz; `declared[name]` overrides a member's header size (its data is cut short)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = bytearray(buf.getvalue())
    for name, size in (declared or {}).items():
        info = tarfile.TarInfo(name)
        info.size = size
        raw = bytearray(info.tobuf(format=tarfile.GNU_FORMAT)) + raw  # first member
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def test_cifar_archive_member_declaring_a_huge_size_is_refused(tmp_path):
    name = f"{cifar.FOLDER}/data_batch_1.bin"
    archive = _tar_gz(tmp_path / "a.tar.gz", {}, declared={name: 50 * 2**30})
    (tmp_path / "out").mkdir()
    msg = _expect_quick_data_error(cifar.extract_archive, archive, tmp_path / "out")
    assert str(archive) in msg and name in msg and str(50 * 2**30) in msg
    assert f"at most {cifar.MAX_MEMBER_BYTES}" in msg
    assert list((tmp_path / "out").iterdir()) == []  # nothing left behind


def test_cifar_archive_total_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "MAX_EXTRACT_BYTES", 5000)
    members = {f"{cifar.FOLDER}/{n}": bytes(cifar.RECORD)
               for n in cifar.TRAIN_FILES + cifar.TEST_FILES}
    archive = _tar_gz(tmp_path / "a.tar.gz", members)
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError, match=r"data_batch_2.bin' declares 3073 bytes \(3073 extracted"
                                        r" before it\).*5000 in all"):
        cifar.extract_archive(archive, tmp_path / "out")
    monkeypatch.setattr(cifar, "MAX_EXTRACT_BYTES", 1 << 30)
    cifar.extract_archive(archive, tmp_path / "out")  # a valid archive still extracts
    assert sorted(p.name for p in (tmp_path / "out" / cifar.FOLDER).iterdir()) == sorted(
        cifar.TRAIN_FILES + cifar.TEST_FILES)


def test_cifar_batch_file_above_the_cap_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "MAX_FILE_BYTES", 10 * cifar.RECORD)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(11 * cifar.RECORD))
    with pytest.raises(DataError, match=rf"{path}: {11 * cifar.RECORD} bytes is above the cap of "
                                        rf"{10 * cifar.RECORD} bytes"):
        cifar.read_cifar_binary(path)


# ----------------------------------------------------------------------------- other inputs


def test_image_above_the_pixel_cap_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(imagefolder, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "big.png"
    Image.new("RGB", (20, 10)).save(path)
    with pytest.raises(DataError, match=rf"{path}: 20x10 = 200 pixels .*cap of 100 pixels"):
        imagefolder.load_image(path, (8, 8))
    Image.new("RGB", (10, 10)).save(path)
    assert imagefolder.load_image(path, (8, 8)).shape == (3, 8, 8)


def test_download_size_is_capped_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(download_mod, "MAX_DOWNLOAD_BYTES", 3 * MiB)
    monkeypatch.setattr(download_mod.urllib.request, "urlopen",
                        lambda url, timeout: io.BytesIO(bytes(5 * MiB)))
    dest = tmp_path / "file.gz"
    with pytest.raises(DataError, match=rf"http://mirror/file.gz: more than {3 * MiB} bytes"):
        download_mod.download(["http://mirror/file.gz"], dest, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []
