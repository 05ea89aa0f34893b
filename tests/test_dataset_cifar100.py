"""CIFAR-100 from its official binary version, on small files the tests write in that format."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustlab.cli import main as cli_main
from robustlab.data import DataError, checksums, load_dataset
from robustlab.data import download as download_mod
from robustlab.data.cifar100 import RECORD

FOLDER = "cifar-100-binary"
FINE = [f"fine{i}" for i in range(100)]
COARSE = [f"coarse{i}" for i in range(20)]


def _records(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
    """n records: pixels uint8 [n, 3, 32, 32], coarse and fine labels, the file's bytes."""
    rng = np.random.default_rng(seed)
    fine = (np.arange(n) * 7 + seed) % 100
    coarse = fine // 5  # any valid pairing; the reader must not derive one from the other
    pixels = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    data = b"".join(bytes([coarse[i], fine[i]]) + pixels[i].tobytes() for i in range(n))
    return pixels, coarse, fine, data


def write_files(root: Path, n_train: int = 30, n_test: int = 12, names: bool = True
                ) -> tuple[Path, dict[str, Any]]:
    """`root/cifar100/cifar-100-binary/` in the official format (train.bin, test.bin and the
    two label-name files); returns (root, options) for `load_dataset("cifar100", ...)`."""
    folder = root / "cifar100" / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.bin").write_bytes(_records(n_train, 1)[3])
    (folder / "test.bin").write_bytes(_records(n_test, 2)[3])
    if names:
        (folder / "fine_label_names.txt").write_text("\n".join(FINE) + "\n")
        (folder / "coarse_label_names.txt").write_text("\n".join(COARSE) + "\n")
    return root, {"verify": False, "val_size": 10}


def test_fine_labels_pixels_and_class_names_read_back_exactly(tmp_path):
    root, options = write_files(tmp_path)
    d = load_dataset("cifar100", root, **{**options, "val_size": 0})
    pixels, coarse, fine, _ = _records(12, 2)
    assert d.info.num_classes == 100 and d.info.class_names == tuple(FINE)
    assert d.info.augment == "crop-flip" and d.info.image_size == (32, 32)
    assert d.test.x.shape == (12, 3, 32, 32) and d.test.x.dtype == torch.float32
    assert torch.equal(d.test.x, torch.from_numpy(pixels.astype(np.float32) / 255))
    assert torch.equal(d.test.y, torch.from_numpy(fine.astype(np.int64)))
    assert d.test.y.dtype == torch.int64 and len(d.train) == 30
    assert 0.0 <= float(d.train.x.min()) and float(d.train.x.max()) <= 1.0
    # channel order: record bytes 2..1025 are the red plane, i.e. channel 0
    raw = (tmp_path / "cifar100" / FOLDER / "test.bin").read_bytes()
    assert bytes((d.test.x[0, 0] * 255).round().to(torch.uint8).flatten().tolist()) == \
        raw[2:1026]
    kwargs = d.info.model_kwargs()
    assert (kwargs["num_classes"], kwargs["in_channels"], kwargs["image_size"]) == \
        (100, 3, (32, 32))


def test_coarse_labels_option_gives_the_20_superclasses(tmp_path):
    root, options = write_files(tmp_path)
    d = load_dataset("cifar100", root, **options, labels="coarse")
    _, coarse, _, _ = _records(12, 2)
    assert d.info.num_classes == 20 and d.info.class_names == tuple(COARSE)
    assert torch.equal(d.test.y, torch.from_numpy(coarse.astype(np.int64)))
    with pytest.raises(DataError, match=r"cifar100 labels: expected one of .*fine.*coarse"):
        load_dataset("cifar100", root, **options, labels="superclass")


def test_without_name_files_the_classes_are_numbered(tmp_path):
    root, options = write_files(tmp_path, names=False)
    assert load_dataset("cifar100", root, **options).info.class_names == \
        tuple(str(i) for i in range(100))


def test_verify_requires_the_official_record_counts(tmp_path):
    root, _ = write_files(tmp_path)
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", root)
    assert str(exc.value).splitlines() == [
        f"{tmp_path / 'cifar100' / FOLDER / 'train.bin'}: expected 50000 records "
        f"({50000 * RECORD} bytes) as in the official file, found 30 records; pass "
        f"verify=False to load a reduced copy on purpose"]


def test_truncated_file_bad_label_and_bad_names_are_one_clear_line(tmp_path):
    root, options = write_files(tmp_path)
    folder = tmp_path / "cifar100" / FOLDER
    (folder / "test.bin").write_bytes((folder / "test.bin").read_bytes()[:-10])
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", root, **options)
    assert len(str(exc.value).splitlines()) == 1
    assert str(exc.value) == (
        f"{folder / 'test.bin'}: truncated or malformed CIFAR-100 binary file: expected a "
        f"positive multiple of 3074 bytes (1 coarse + 1 fine label + 3072 pixel bytes per "
        f"record), found {12 * RECORD - 10} bytes (11 records + {RECORD - 10} bytes)")
    write_files(tmp_path)
    data = bytearray((folder / "train.bin").read_bytes())
    data[3 * RECORD] = 20  # coarse label of record 3
    (folder / "train.bin").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"train.bin: expected coarse labels in \[0, 19\], "
                                        r"found 20 in record 3$"):
        load_dataset("cifar100", root, **options)
    write_files(tmp_path)
    (folder / "fine_label_names.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"fine_label_names.txt: expected 100 class names, one "
                                        r"per line, found 2$"):
        load_dataset("cifar100", root, **options)


def test_python_pickle_version_is_named_and_not_read(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"\x80\x04not read")
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", tmp_path)
    msg = str(exc.value)
    assert f"Found {folder}" in msg and "python-pickle version" in msg
    assert "cifar-100-binary.tar.gz" in msg and "--download" in msg


def _archive(tmp_path: Path, extra: str | None = None) -> Path:
    write_files(tmp_path / "src")
    archive = tmp_path / "served.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar100" / FOLDER, arcname=FOLDER)
        if extra:
            info = tarfile.TarInfo(extra)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    return archive


def test_download_refuses_a_wrong_checksum_then_extracts_the_verified_archive(
        tmp_path, monkeypatch):
    archive = _archive(tmp_path)
    calls = []

    def fake_fetch(url: str, dest: Path) -> None:
        calls.append(url)
        dest.write_bytes(archive.read_bytes())

    monkeypatch.setattr(download_mod, "fetch", fake_fetch)
    with pytest.raises(DataError) as exc:
        load_dataset("cifar100", tmp_path / "data", download=True, verify=False)
    msg = str(exc.value)
    assert "checksum mismatch" in msg and "03b5dce01913d631647c71ecec9e9cb8" in msg
    assert hashlib.md5(archive.read_bytes()).hexdigest() in msg
    assert list((tmp_path / "data" / "cifar100").iterdir()) == []
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"]
    monkeypatch.setattr(checksums, "CIFAR100_BINARY_MD5",
                        hashlib.md5(archive.read_bytes()).hexdigest())
    d = load_dataset("cifar100", tmp_path / "data", download=True, verify=False, val_size=0)
    target = tmp_path / "data" / "cifar100"
    assert d.source["root"] == str(target / FOLDER)
    assert sorted(p.name for p in target.iterdir()) == [FOLDER, "cifar-100-binary.tar.gz"]
    assert len(d.train) == 30 and d.info.class_names == tuple(FINE)


@pytest.mark.parametrize("member", ["../evil.txt", "cifar-100-binary/sub/x.bin", "other/x"])
def test_archive_with_an_unsafe_member_is_refused(tmp_path, monkeypatch, member):
    archive = _archive(tmp_path, extra=member)
    monkeypatch.setattr(download_mod, "fetch",
                        lambda url, dest: dest.write_bytes(archive.read_bytes()))
    monkeypatch.setattr(checksums, "CIFAR100_BINARY_MD5",
                        hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=f"unexpected member '{member}': expected only regular "
                                        f"files directly inside cifar-100-binary/"):
        load_dataset("cifar100", tmp_path / "data", download=True, verify=False)
    assert not (tmp_path / "data" / "evil.txt").exists()
    assert not (tmp_path / "data" / "cifar100" / FOLDER).exists()


@pytest.mark.integration
def test_train_command_runs_end_to_end_on_the_small_files(tmp_path, capsys):
    root, _ = write_files(tmp_path / "data")
    config = tmp_path / "c.toml"
    config.write_text("[train.dataset_options]\nverify = false\nlabels = \"coarse\"\n")
    out = tmp_path / "run"
    code = cli_main(["train", "--dataset", "cifar100", "--model", "resnet18", "--epochs", "1",
                     "--train-size", "20", "--val-size", "5", "--batch-size", "10",
                     "--data-dir", str(root), "--config", str(config), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / "model.safetensors").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["dataset"] == "cifar100"
    assert config["train"]["dataset_options"] == {"verify": False, "labels": "coarse"}
    kwargs = config["model_kwargs"]
    assert (kwargs["num_classes"], kwargs["in_channels"], list(kwargs["image_size"])) == \
        (20, 3, [32, 32])
