"""Per-batch cost of the FGSM hybrid's training step against a standard step (LeNet-5, MNIST,
batch 128, CPU, interleaved rounds), and of its shared clean pass alone (parameter gradients
plus FGSM's input gradient, under the CPU kernels). The numbers docs/performance.md quotes
for where the hybrid's epoch ratio goes.

    python bench/hybrid_step.py [--batches 40] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from robustlab.data import load_dataset
from robustlab.models import create_model
from robustlab.training.methods import create_method
from robustlab.training.methods.perturb import differentiable_forward, training_pass_kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d = load_dataset("mnist", val_size=5000)
    model = create_model("lenet5", num_classes=10, in_channels=1, mean=d.info.mean,
                         std=d.info.std, image_size=d.info.image_size)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    hybrid = create_method("hybrid-fgsm")
    ctx = SimpleNamespace(cfg=SimpleNamespace(eps=0.3, norm="linf", eps_warmup=0, epochs=1,
                                              method="hybrid-fgsm", seed=0),
                          val=d.val, epoch=0, progress=0.5, step=0, model=model)
    hybrid.setup(ctx)
    hybrid.start_epoch(ctx)

    def standard(x, y):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def shared_pass(x, y):
        opt.zero_grad(set_to_none=True)
        xr = x.detach().requires_grad_(True)
        with training_pass_kernels(model, x):
            F.cross_entropy(differentiable_forward(model)(xr), y).backward()

    steps = {"standard step": standard, "hybrid-fgsm step": lambda x, y: hybrid.train_step(
        model, opt, x, y, ctx), "shared clean pass": shared_pass}
    batches = [(d.train.x[i * 128:(i + 1) * 128], d.train.y[i * 128:(i + 1) * 128])
               for i in range(args.batches)]
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            fn(*batches[0])  # warm-up
            t = time.perf_counter()
            for x, y in batches:
                fn(x, y)
            times[name].append((time.perf_counter() - t) / len(batches) * 1e3)
    base = statistics.median(times["standard step"])
    print(f"LeNet-5, batch 128, {args.threads} thread(s), median of {args.rounds} rounds "
          f"of {args.batches} batches")
    for name, ts in times.items():
        ms = statistics.median(ts)
        print(f"{name:18s} {ms:6.2f} ms  ({ms / base:.2f}x a standard step)")


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
