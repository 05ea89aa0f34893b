"""The FGSM hybrid's shared clean pass (forward + one backward giving the parameters' gradient
and the input's) with and without `CPUKernels`, timed alone in one process, interleaved.

    python bench/shared_pass.py [--batch 128] [--rounds 40]

Prints the median milliseconds per pass and the ratio at 1 and 2 torch threads (LeNet-5,
random MNIST-shaped input; the pass's cost does not depend on the values).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from robustlab.accel.allocator import tune_malloc
from robustlab.accel.cpu_kernels import CPUKernels
from robustlab.models import create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args()
    tune_malloc()  # as the training loop does
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_channels=1, mean=(0.13,), std=(0.31,),
                         image_size=(28, 28))
    x, y = torch.rand(args.batch, 1, 28, 28), torch.randint(0, 10, (args.batch,))

    def shared_pass(fast: bool) -> None:
        xr = x.clone().requires_grad_(True)
        model.zero_grad()
        with CPUKernels.when(fast):
            out = model(xr)
        F.cross_entropy(out, y).backward()

    for threads in (1, 2):
        torch.set_num_threads(threads)
        times: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(5):
            shared_pass(True), shared_pass(False)
        for _ in range(args.rounds):
            for fast in (True, False):
                t0 = time.perf_counter()
                shared_pass(fast)
                times[fast].append(time.perf_counter() - t0)
        fast, plain = (statistics.median(times[k]) * 1e3 for k in (True, False))
        print(f"{threads} thread(s): shared pass {fast:.2f} ms with the kernels, {plain:.2f} ms "
              f"without: {plain / fast:.2f}x")


if __name__ == "__main__":
    main()
