"""Every file robustlab reads back carries a digest: checkpoints (SHA-256 of all tensors and the
JSON state in their metadata, checked on --resume) and eval files (a "sha256" field over the
canonical JSON of the rest, checked by the report and by reproduce's cache). Files written
before digests existed are read without the check."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_faults import train_args  # the fault tests' tiny run

from robustlab.cli import main
from robustlab.common.digest import DIGEST_FIELD, DigestError, check_digest, with_digest
from robustlab.common.files import atomic_write_json, read_json
from robustlab.evaluation import EvalSettings
from robustlab.evaluation.runs import read_cached
from robustlab.reporting.collect import load_records
from robustlab.runs.checkpoint import STATE_DIGEST_KEY, WeightsError, load_state, save_state


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run with its eval.json (fgsm, 8 images)."""
    run = tmp_path_factory.mktemp("finished") / "exp" / "run"
    assert main(train_args(run)) == 0
    assert main(["evaluate", str(run), "--attacks", "fgsm", "--n", "8", "--device", "cpu"]) == 0
    return run


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped by a full disk at epoch 2's checkpoint: epoch 1's checkpoint is there."""
    run = tmp_path_factory.mktemp("interrupted") / "run"
    real, count = os.replace, [0]

    def full_disk(src, dst, *args, **kwargs):
        count[0] += 1
        if count[0] == 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "replace", full_disk)
        assert main(train_args(run)) == 2
    assert (run / "checkpoint.safetensors").is_file()
    return run


# --- checkpoints -------------------------------------------------------------------------------

def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":  # one bit of the last tensor's bytes
        data[-5] ^= 0x10
    else:  # the JSON state's epoch (its last entry) 1 -> 0: same length, the header parses
        old = b'\\"epoch\\", 1]'
        at = data.rindex(old)
        data[at: at + len(old)] = b'\\"epoch\\", 0]'
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "state"])
def test_a_damaged_checkpoint_is_refused_on_resume_with_one_line(interrupted, tmp_path, capsys,
                                                                 how):
    """Before digests, a flipped bit resumed with exit 0 and the wrong weights then received a
    fresh, valid digest in model.safetensors."""
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    _damage(run / "checkpoint.safetensors", how)
    weights = (run / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(train_args(run) + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"checkpoint {run / 'checkpoint.safetensors'}" in err
    if how == "flip":
        assert "does not match the digest written with them" in err
    assert "cannot be resumed from it" in err and "--overwrite" in err
    assert (run / "model.safetensors").read_bytes() == weights  # nothing republished
    assert (run / "checkpoint.safetensors").is_file()


def test_the_way_out_of_a_damaged_checkpoint_gives_the_uninterrupted_run(interrupted, finished,
                                                                         tmp_path):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    _damage(run / "checkpoint.safetensors", "flip")
    assert main(train_args(run) + ["--overwrite"]) == 0
    got, want = (load_file(str(r / "model.safetensors")) for r in (run, finished))
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_an_intact_checkpoint_resumes_to_the_uninterrupted_run(interrupted, finished, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as fh:
        assert len(fh.metadata()[STATE_DIGEST_KEY]) == 64
    assert main(train_args(run) + ["--resume"]) == 0
    got, want = (load_file(str(r / "model.safetensors")) for r in (run, finished))
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_checkpoint_digest_covers_tensors_and_state_and_old_checkpoints_still_load(tmp_path):
    path = tmp_path / "ck.safetensors"
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3,
             "metrics": [{"train_loss": 0.5}], "method": {"guard": (1, None)}}
    save_state(path, state)
    back = load_state(path)
    assert back["epoch"] == 3 and torch.equal(back["model"]["w"], state["model"]["w"])
    assert back["method"] == {"guard": (1, None)}
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    skeleton = meta["robustlab_skeleton"]
    # the state changed, the tensors not: refused
    save_file(tensors, str(path), metadata={**meta,
                                            "robustlab_skeleton": skeleton.replace("3", "4")})
    with pytest.raises(WeightsError, match="does not match the digest"):
        load_state(path)
    # written before digests existed (no robustlab_sha256): loads unchecked
    save_file(tensors, str(path), metadata={"robustlab_skeleton": skeleton})
    assert load_state(path)["epoch"] == 3


# --- eval files --------------------------------------------------------------------------------

def test_evaluate_writes_a_digest_the_report_accepts(finished):
    data = read_json(finished / "eval.json")
    assert len(data[DIGEST_FIELD]) == 64
    assert check_digest(data, "eval.json") is data
    records, _ = load_records(finished.parent)
    assert len(records) == 1


def _edited_copy(finished: Path, tmp_path: Path) -> Path:
    root = tmp_path / "exp"
    shutil.copytree(finished.parent, root)
    path = root / "run" / "eval.json"
    data = read_json(path)
    data["clean"]["acc"] = 1.0 if data["clean"]["acc"] != 1.0 else 0.5  # a "better" number
    path.write_text(json.dumps(data, indent=2))
    return root


def test_a_hand_edited_eval_file_is_refused_by_the_report_with_one_line(finished, tmp_path,
                                                                        capsys):
    root = _edited_copy(finished, tmp_path)
    capsys.readouterr()
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{root / 'run' / 'eval.json'}: was edited after robustlab wrote it" in err
    assert not (root / "results.json").exists()


def test_reproduce_refuses_a_hand_edited_cached_eval_instead_of_using_or_replacing_it(
        finished, tmp_path):
    root = _edited_copy(finished, tmp_path)
    path = root / "run" / "eval.json"
    s = read_json(path)["settings"]
    settings = EvalSettings(attacks=tuple(s["attacks"]), eps=s["eps"], norm=s["norm"], n=8)
    with pytest.raises(DigestError, match="was edited after robustlab wrote it"):
        read_cached(path, settings)


def test_eval_files_without_a_digest_are_read_as_before(finished, tmp_path):
    root = tmp_path / "exp"
    shutil.copytree(finished.parent, root)
    path = root / "run" / "eval.json"
    data = read_json(path)
    del data[DIGEST_FIELD]
    data["clean"]["acc"] = 0.25
    path.write_text(json.dumps(data))
    (record,), _ = load_records(root)
    assert record["clean"] == 0.25


def test_the_digest_survives_the_write_and_read_of_any_result(tmp_path):
    """What `with_digest` hashes is what reads back: floats that round-trip only by repr,
    NaN (written as null), tuples (lists), numpy scalars, unicode, key order."""
    result = {"b": [0.1 + 0.2, 1e-320, -0.0, 2**70, math.nan, math.inf], "a": (1, "é→"),
              "n": {"np": np.float32(0.3), "i": np.int64(7)}, "z": None}
    path = tmp_path / "eval.json"
    atomic_write_json(path, with_digest(result))
    back = read_json(path)
    assert check_digest(back, str(path)) is back
    assert back["b"][4] is None and back["n"]["i"] == 7
    reordered = json.loads(json.dumps(back, sort_keys=False), object_pairs_hook=lambda kv:
                           dict(reversed(kv)))
    assert check_digest(reordered, "x") == reordered
    back["b"][0] = 0.3
    with pytest.raises(DigestError, match=f"{path}: was edited after robustlab wrote it"):
        check_digest(back, str(path))
