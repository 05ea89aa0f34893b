"""Data-parallel scaling on this machine: 2 gloo processes versus 1 process (LeNet-5, MNIST).

Both runs train the same global batches (same seed); the ratio is throughput(2) / throughput(1).
On a 2-core CPU the ideal is 2.0 only if one process cannot already use both cores.

    python bench/scaling.py [--train-size 20000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def epoch_time(nproc: int, train_size: int, threads: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "robustlab", "train", "--dataset", "mnist", "--model",
               "lenet5", "--train-size", str(train_size), "--val-size", "0", "--epochs", "1",
               "--device", "cpu", "--out", f"{tmp}/run", "--no-progress", "--nproc", str(nproc)]
        if threads:
            cmd += ["--threads", str(threads)]
        subprocess.run(cmd, check=True, capture_output=True)
        row = json.loads((Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()[0])
        return row["epoch_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=20000)
    args = parser.parse_args()
    one = epoch_time(1, args.train_size, None)
    two = epoch_time(2, args.train_size, 1)
    print(f"1 process (all threads): {args.train_size / one:,.0f} images/s")
    print(f"2 gloo processes (1 thread each): {args.train_size / two:,.0f} images/s")
    print(f"ratio 2-process / 1-process throughput: {one / two:.2f}")


if __name__ == "__main__":
    main()
