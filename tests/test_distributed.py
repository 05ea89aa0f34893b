"""Two gloo processes (torchrun) give the single-process results: same global batch and seed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from robustlab.training.distributed import DistContext

pytestmark = pytest.mark.integration  # torchrun-style worker processes


def _train(root, out, nproc: int) -> None:
    cmd = [sys.executable, "-m", "robustlab", "train", "--dataset", "mnist", "--model", "lenet5",
           "--train-size", "3000", "--val-size", "500", "--epochs", "2", "--device", "cpu",
           "--data-dir", str(root), "--out", str(out), "--no-progress", "--nproc", str(nproc),
           "--recipe", "paper"]  # lr 0.01 constant: float-order noise is not amplified
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"run folder: {out}" in done.stdout  # printed once, by rank 0


def test_two_process_training_matches_one_process(mnist_root, tmp_path):
    _train(mnist_root, tmp_path / "one", 1)
    _train(mnist_root, tmp_path / "two", 2)
    w1 = load_file(str(tmp_path / "one" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "model.safetensors"))
    # DDP averages per-rank mean gradients over equal shards = the full-batch mean gradient;
    # only the floating-point summation order differs.
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-4
    m1 = (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
    m2 = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(m1) == len(m2) == 2
    import json

    for a, b in zip(map(json.loads, m1), map(json.loads, m2), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=0.004)
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s2["world_size"] == 2 and s1["world_size"] == 1
    assert s1["test_acc"] == pytest.approx(s2["test_acc"], abs=0.003)


def test_shards_cover_the_batch_exactly_once():
    x = torch.arange(10)
    parts = [DistContext(rank=r, world_size=3).shard(x)[0] for r in range(3)]
    assert torch.equal(torch.cat(parts), x)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert DistContext().shard(x)[0] is x


def _evaluate(run, out, nproc: int) -> dict:
    import json
    import os

    cmd = [sys.executable, "-m", "robustlab", "evaluate", str(run), "--attacks",
           "fgsm,pgd,apgd-ce", "--eps", "0.06", "--n", "150", "--batch-size", "50",
           "--device", "cpu", "--out", str(out), "--nproc", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same kernels and summation order everywhere
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(f"wrote {out}") == 1  # rank 0 alone writes and prints
    return json.loads(out.read_text())


def test_two_process_evaluation_equals_one_process_per_sample(mnist_root, tmp_path):
    """Batches 0 and 2 go to rank 0, batch 1 to rank 1 (of every attack, the curve and the
    audit); the gathered per-sample results and every metric equal a single process's."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "robustlab", "train", "--dataset", "mnist", "--model", "lenet5",
           "--train-size", "2000", "--val-size", "200", "--epochs", "1", "--device", "cpu",
           "--data-dir", str(mnist_root), "--out", str(run), "--no-progress"]
    assert subprocess.run(cmd, capture_output=True, timeout=600).returncode == 0
    one = _evaluate(run, tmp_path / "one.json", 1)
    two = _evaluate(run, tmp_path / "two.json", 2)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["per_sample"] == two["per_sample"]
    assert 0.0 < two["worst_case"]["acc"] < two["clean"]["acc"]  # a real, partial attack
    for key in ("clean", "attacks", "worst_case", "mixed", "curve"):
        a, b = dict(one[key]), dict(two[key])
        if key == "attacks":
            a = {k: {**v, "seconds": None} for k, v in a.items()}
            b = {k: {**v, "seconds": None} for k, v in b.items()}
        assert a == b, key
    assert one["audit"]["checks"] == two["audit"]["checks"]
