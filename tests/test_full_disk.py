"""A REAL full disk while training: a small tmpfs fills up while robustlab writes a checkpoint,
the weights or a JSON file. safetensors raises its own SafetensorError (not OSError) on a full
disk; every safetensors write goes through `runs.checkpoint.write_safetensors`, which turns it
into an OSError naming the file, and the CLI prints that as one line. The folder stays whole and
`--resume`, once there is space, gives the uninterrupted run's weights bit for bit.

The tmpfs tests need `mount` (root, and a kernel that lets this process mount); they skip,
with the reason, where it is not permitted.
"""

from __future__ import annotations

import errno
import gc
import re
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from test_faults import train_args  # the fault tests' tiny run

from robustlab.cli import main
from robustlab.common.files import atomic_write_json
from robustlab.runs import checkpoint
from robustlab.runs.checkpoint import write_safetensors

pytestmark = pytest.mark.integration  # a real tmpfs (mount/umount) and training runs

SRC = Path(__file__).resolve().parents[1] / "src" / "robustlab"


def _mount(folder: Path, size: str, *, remount: bool = False) -> subprocess.CompletedProcess:
    opts = f"remount,size={size}" if remount else f"size={size}"
    cmd = ["mount", "-o", opts, str(folder)] if remount else \
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except FileNotFoundError as err:
        return subprocess.CompletedProcess(cmd, 127, "", str(err))


@pytest.fixture
def small_disk(tmp_path):
    """A factory: mount a tmpfs of the given size on a fresh folder (umounted at the end)."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = _mount(folder, size)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and mount permission): "
                        f"{(done.stderr or done.stdout).strip()}")
        mounted.append(folder)
        return folder

    try:
        yield make
    finally:
        for folder in mounted:
            _umount(folder)


def _umount(folder: Path) -> None:
    """Never leave a mount behind: retry after collecting garbage (a mapped file keeps it
    busy), detach it lazily as the last resort, and fail the test if it was busy."""
    if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30).returncode == 0:
        return
    gc.collect()
    if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)
        pytest.fail(f"{folder} was still in use after the test (a file on it held open)")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(train_args(run)) == 0
    return load_file(str(run / "model.safetensors"))


# checkpoint.safetensors of this run is ~490 KiB, model.safetensors ~245 KiB; config.json and
# metrics.jsonl take a 4 KiB page each
@pytest.mark.parametrize("size, full_at", [
    ("300k", "checkpoint.safetensors"),  # epoch 1's checkpoint does not fit
    ("600k", "model.safetensors"),  # epoch 1's checkpoint fits, its weights do not
    ("1000k", "checkpoint.safetensors"),  # epoch 1 written whole; epoch 2's checkpoint fails
])
def test_a_real_full_disk_is_one_line_and_resume_gives_the_uninterrupted_run(
        small_disk, uninterrupted, capsys, size, full_at):
    disk = small_disk(size)
    run = disk / "run"
    assert main(train_args(run)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert re.search(rf"cannot write \S*/run/{re.escape(full_at)}: No space left on device "
                     r"\(the disk is full\).*--resume", lines[0]), lines[0]
    assert not [p.name for p in disk.rglob("*.tmp")]  # the failed write left nothing behind
    for name in ("checkpoint.safetensors", "model.safetensors"):  # what is there is whole
        if (run / name).exists():
            load_file(str(run / name))
    assert _mount(disk, "50m", remount=True).returncode == 0
    assert main(train_args(run) + ["--resume"]) == 0
    weights = load_file(str(run / "model.safetensors"))
    assert weights.keys() == uninterrupted.keys()
    assert all(torch.equal(weights[k], uninterrupted[k]) for k in weights)
    assert not (run / "checkpoint.safetensors").exists()


def test_a_json_write_on_a_full_disk_names_the_file(small_disk):
    """A full disk while writing a JSON file (metrics, summary, an eval file): the OSError names
    the file, not the temporary one beside it, and the previous version stays."""
    disk = small_disk("64k")
    target = disk / "metrics.json"
    atomic_write_json(target, {"epoch": 1})
    (disk / "filler").write_bytes(b"\0" * (60 << 10))  # what is left: less than a page
    with pytest.raises(OSError) as caught:
        atomic_write_json(target, {"epoch": 2, "pad": "x" * 20000})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert target.read_text() == '{\n  "epoch": 1\n}\n'
    assert not list(disk.glob(".*.tmp"))


def test_a_safetensors_error_from_a_full_disk_becomes_an_oserror_naming_the_file(tmp_path,
                                                                                 monkeypatch):
    """Without a tmpfs: what safetensors 0.4-0.8 raise when the disk fills (SafetensorError,
    not OSError) becomes OSError(ENOSPC, ..., the target); the old file stays."""
    target = tmp_path / "model.safetensors"
    write_safetensors(target, {"w": torch.ones(3)}, {})

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device "
                              "(os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(OSError) as caught:
        write_safetensors(target, {"w": torch.zeros(3)}, {})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert torch.equal(load_file(str(target))["w"], torch.ones(3))
    assert not list(tmp_path.glob(".*.tmp"))


def test_every_safetensors_write_goes_through_write_safetensors():
    """One writer: `save_file` is called in runs/checkpoint.py's write_safetensors alone."""
    callers = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                     if re.search(r"\bsave_file\(|\bsave_model\(|\bserialize_file\(",
                                  p.read_text()))
    assert callers == ["runs/checkpoint.py"]
    assert (SRC / "runs" / "checkpoint.py").read_text().count("save_file(") == 1
