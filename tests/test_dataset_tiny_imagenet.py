"""Tiny-ImageNet from its official `tiny-imagenet-200/` folder, written by the tests in that
layout (wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images + val_annotations.txt,
test/images without labels), a few 64x64 JPEGs per class."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from robustlab.data import DataError, checksums, load_dataset
from robustlab.data import download as download_mod
from robustlab.models import create_model

FOLDER = "tiny-imagenet-200"
WNIDS = ["n09999999", "n01443537", "n02124075", "n04067472", "n01629819"]  # file order
WORDS = {"n01443537": "goldfish, Carassius auratus", "n02124075": "Egyptian cat",
         "n04067472": "reel", "n01629819": "European fire salamander, Salamandra salamandra",
         "n00000001": "entity"}  # n09999999 has no entry: its name is its wnid


def _image(path: Path, wnid: str, i: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(hashlib.md5(f"{wnid}{i}".encode()).hexdigest()[:8], 16))
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, format="JPEG", quality=90)


def write_files(root: Path, n_train: int = 3, n_val: int = 2) -> tuple[Path, dict[str, Any]]:
    """`root/tiny-imagenet/tiny-imagenet-200/` in the official layout; returns (root, options)
    for `load_dataset("tiny-imagenet", ...)`."""
    base = root / "tiny-imagenet" / FOLDER
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in WORDS.items()))
    for wnid in WNIDS:
        boxes = []
        for i in range(n_train):
            name = f"{wnid}_{i}.JPEG"
            _image(base / "train" / wnid / "images" / name, wnid, i,
                   mode="L" if (wnid, i) == ("n02124075", 1) else "RGB")  # some are grayscale
            boxes.append(f"{name}\t0\t0\t63\t63\n")
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    lines = []
    for j in range(n_val * len(WNIDS)):
        wnid = WNIDS[(j * 3) % len(WNIDS)]
        _image(base / "val" / "images" / f"val_{j}.JPEG", wnid, 1000 + j)
        lines.append(f"val_{j}.JPEG\t{wnid}\t{j % 7}\t2\t60\t61\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    _image(base / "test" / "images" / "test_0.JPEG", "test", 0)
    return root, {"verify": False, "val_size": 3, "workers": 1}


def _decoded(path: Path) -> torch.Tensor:
    with Image.open(path) as img:
        return torch.from_numpy(np.asarray(img.convert("RGB")).transpose(2, 0, 1).copy())


def test_val_is_the_test_split_labels_follow_sorted_wnids(tmp_path):
    root, options = write_files(tmp_path)
    d = load_dataset("tiny-imagenet", root, **{**options, "val_size": 0})
    base = tmp_path / "tiny-imagenet" / FOLDER
    ordered = sorted(WNIDS)
    assert d.info.num_classes == 5 and d.info.image_size == (64, 64)
    assert ordered == ["n01443537", "n01629819", "n02124075", "n04067472", "n09999999"]
    assert d.info.class_names == ("goldfish", "European fire salamander", "Egyptian cat",
                                  "reel", "n09999999")
    assert d.info.augment == "crop-flip"
    assert (len(d.train), len(d.test)) == (15, 10)
    assert d.test.x.shape == (10, 3, 64, 64) and d.test.x.dtype == torch.float32
    assert d.test.y.dtype == torch.int64
    annotations = (base / "val" / "val_annotations.txt").read_text().splitlines()
    for k, line in enumerate(annotations):  # in the annotation file's order
        name, wnid = line.split("\t")[:2]
        assert int(d.test.y[k]) == ordered.index(wnid)
        assert torch.equal((d.test.x[k] * 255).round().to(torch.uint8),
                           _decoded(base / "val" / "images" / name))
    # train: class by class in sorted-wnid order, files sorted by name; grayscale -> RGB
    assert d.train.y.tolist() == [c for c in range(5) for _ in range(3)]
    gray = d.train.x[ordered.index("n02124075") * 3 + 1]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    assert 0.0 <= float(d.train.x.min()) and float(d.train.x.max()) <= 1.0
    assert "val/" in d.source["test_from"]


def test_workers_and_max_per_class_and_the_model(tmp_path):
    root, options = write_files(tmp_path)
    one = load_dataset("tiny-imagenet", root, **options)
    many = load_dataset("tiny-imagenet", root, **{**options, "workers": 4})
    assert torch.equal(one.train.x, many.train.x) and torch.equal(one.test.x, many.test.x)
    capped = load_dataset("tiny-imagenet", root, **{**options, "max_per_class": 2,
                                                    "val_size": 0})
    assert capped.train.y.tolist() == [c for c in range(5) for _ in range(2)]
    model = create_model("resnet18", **one.info.model_kwargs())
    assert model(one.test.x[:2]).shape == (2, 5)


def test_verify_requires_the_official_counts(tmp_path):
    root, options = write_files(tmp_path)
    with pytest.raises(DataError) as exc:
        load_dataset("tiny-imagenet", root)
    assert str(exc.value) == (f"{tmp_path / 'tiny-imagenet' / FOLDER / 'wnids.txt'}: expected "
                              f"200 class ids as in the official file, found 5; pass "
                              f"verify=False to load a reduced copy on purpose")


def _one_line(root: Path, options: dict[str, Any]) -> str:
    with pytest.raises(DataError) as exc:
        load_dataset("tiny-imagenet", root, **options)
    assert len(str(exc.value).splitlines()) == 1, str(exc.value)
    return str(exc.value)


def test_bad_files_give_one_clear_line(tmp_path):
    root, options = write_files(tmp_path)
    base = tmp_path / "tiny-imagenet" / FOLDER
    image = base / "train" / "n01443537" / "images" / "n01443537_2.JPEG"
    image.write_bytes(image.read_bytes()[:200])  # truncated JPEG
    assert _one_line(root, options).startswith(f"{image}: expected a JPEG image Pillow can "
                                               f"decode, found an error: ")
    Image.new("RGB", (32, 64)).save(image, format="JPEG")
    assert _one_line(root, options) == f"{image}: expected a 64x64 Tiny-ImageNet image, found " \
                                       f"32x64"
    image.unlink()
    for other in image.parent.iterdir():
        other.unlink()
    assert _one_line(root, options) == f"{image.parent}: expected at least 1 .JPEG images, " \
                                       f"found 0"
    write_files(tmp_path)
    notes = base / "val" / "val_annotations.txt"
    notes.write_text(notes.read_text() + "val_99.JPEG\tn00000000\t0\t0\t1\t1\n")
    assert _one_line(root, options) == (f"{notes}: line 11: expected 'FILE<TAB>WNID<TAB>box' "
                                        f"with a wnid of wnids.txt, found "
                                        f"'val_99.JPEG\\tn00000000\\t0\\t0\\t1\\t1'")
    notes.write_text(notes.read_text().replace("\tn00000000\t", "\tn01443537\t"))
    assert _one_line(root, options) == (f"{notes}: line 11 names {base / 'val' / 'images'}"
                                        f"/val_99.JPEG, which does not exist; expected every "
                                        f"annotated val image")
    (base / "wnids.txt").write_text("n01443537\nn01443537\n")
    assert "expected distinct WordNet ids" in _one_line(root, options)


def _zip(tmp_path: Path, extra: str | None = None, link: str | None = None) -> Path:
    write_files(tmp_path / "src", n_train=2, n_val=1)
    src = tmp_path / "src" / "tiny-imagenet"
    archive = tmp_path / "served.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src).as_posix())
        if extra:
            zf.writestr(extra, b"bad")
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (0o120777 << 16)  # a symbolic link
            zf.writestr(info, "/etc/passwd")
    return archive


def test_download_refuses_a_wrong_checksum_then_extracts_without_test(tmp_path, monkeypatch):
    archive = _zip(tmp_path)
    calls = []

    def fake_fetch(url: str, dest: Path) -> None:
        calls.append(url)
        dest.write_bytes(archive.read_bytes())

    monkeypatch.setattr(download_mod, "fetch", fake_fetch)
    with pytest.raises(DataError) as exc:
        load_dataset("tiny-imagenet", tmp_path / "data", download=True, verify=False)
    msg = str(exc.value)
    assert "checksum mismatch" in msg and "90528d7ca1a48142e341f4ef8d21d0de" in msg
    assert list((tmp_path / "data" / "tiny-imagenet").iterdir()) == []
    assert calls == ["http://cs231n.stanford.edu/tiny-imagenet-200.zip"]
    monkeypatch.setattr(checksums, "TINY_IMAGENET_MD5",
                        hashlib.md5(archive.read_bytes()).hexdigest())
    d = load_dataset("tiny-imagenet", tmp_path / "data", download=True, verify=False,
                     val_size=0, workers=1)
    target = tmp_path / "data" / "tiny-imagenet"
    assert sorted(p.name for p in target.iterdir()) == [FOLDER, "tiny-imagenet-200.zip"]
    assert not (target / FOLDER / "test").exists()  # no labels: not extracted
    assert (len(d.train), len(d.test)) == (10, 5)


@pytest.mark.parametrize(("extra", "link"), [("../evil.txt", None), ("other/x.txt", None),
                                             ("/abs.txt", None), (FOLDER, None),
                                             (f"{FOLDER}/val/../../x", None),
                                             (None, f"{FOLDER}/wnids2")])
def test_zip_with_an_unsafe_member_is_refused(tmp_path, monkeypatch, extra, link):
    archive = _zip(tmp_path, extra=extra, link=link)
    monkeypatch.setattr(download_mod, "fetch",
                        lambda url, dest: dest.write_bytes(archive.read_bytes()))
    monkeypatch.setattr(checksums, "TINY_IMAGENET_MD5",
                        hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=f"unexpected member '{extra or link}': expected only "
                                        f"regular files inside {FOLDER}/"):
        load_dataset("tiny-imagenet", tmp_path / "data", download=True, verify=False)
    assert not (tmp_path / "data" / "tiny-imagenet" / FOLDER).exists()
    assert not (tmp_path / "data" / "evil.txt").exists()


def test_a_member_above_the_cap_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from robustlab.data import tiny_imagenet

    archive = _zip(tmp_path)
    monkeypatch.setattr(tiny_imagenet, "LAYOUT", tiny_imagenet.LAYOUT.__class__(
        **{**tiny_imagenet.LAYOUT.__dict__, "max_member": 100}))
    monkeypatch.setattr(download_mod, "fetch",
                        lambda url, dest: dest.write_bytes(archive.read_bytes()))
    monkeypatch.setattr(checksums, "TINY_IMAGENET_MD5",
                        hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=r"declares \d+ bytes .*expected at most 100 bytes per "
                                        r"member"):
        load_dataset("tiny-imagenet", tmp_path / "data", download=True, verify=False)
    assert [p.name for p in (tmp_path / "data" / "tiny-imagenet").iterdir()] == \
        ["tiny-imagenet-200.zip"]
