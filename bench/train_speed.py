"""Standard-training throughput of LeNet-5 on MNIST versus the floor.

The floor is a bare PyTorch loop over the same batches (pre-sliced tensors, forward,
cross-entropy, backward, SGD step) with nothing else: no logging, no checkpoints, no data
shuffling. robustlab's number is one epoch of `robustlab.training.train` with validation off
(val_size=0), so both do the same arithmetic. Ratios, not absolute times, are what to quote:
they are measured side by side in one process, repeated, median taken.

    python bench/train_speed.py [--train-size 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from robustlab.data import load_dataset
from robustlab.models import create_model
from robustlab.training import TrainConfig, train


def floor_epoch(x, y, batch_size: int, channels_last: bool) -> float:
    torch.manual_seed(0)
    info = load_dataset("mnist", val_size=0).info
    model = create_model("lenet5", **info.model_kwargs())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    t0 = time.perf_counter()
    for xb, yb in batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return time.perf_counter() - t0


def robustlab_epoch(train_size: int, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(dataset="mnist", model="lenet5", epochs=1, train_size=train_size,
                          val_size=0, batch_size=batch_size, progress=False, device="cpu",
                          out_dir=f"{tmp}/run")
        return train(cfg).metrics[0]["epoch_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train_split = load_dataset("mnist", val_size=0).train
    x, y = train_split.x[: args.train_size], train_split.y[: args.train_size]
    times: dict[str, list[float]] = {"floor_nchw": [], "floor_channels_last": [], "robustlab": []}
    for _ in range(args.repeats):
        times["floor_nchw"].append(floor_epoch(x, y, args.batch_size, channels_last=False))
        times["floor_channels_last"].append(floor_epoch(x, y, args.batch_size, channels_last=True))
        times["robustlab"].append(robustlab_epoch(args.train_size, args.batch_size))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"LeNet-5 / MNIST, {args.train_size} images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"robustlab standard training: {args.train_size / med['robustlab']:,.0f} images/s")
    print(f"ratio robustlab / floor (NCHW)          : {med['robustlab'] / med['floor_nchw']:.2f}"
          "  (target <= 1.3)")
    print(f"ratio robustlab / floor (channels_last) : "
          f"{med['robustlab'] / med['floor_channels_last']:.2f}")


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
