"""Training epoch time of each method relative to `standard` (LeNet-5, MNIST, CPU).

Floors, in eager forward+backward passes per batch: training on D ∪ D_adv with an FGSM copy
(`hybrid-fgsm`) 2; the default hybrid (PGD-2 copies) 2 input-gradient passes + 2; PGD-AT with
k = 10 costs k input-gradient passes + 1 training pass, 11. Targets (issue #13): pgd-at <= 9,
hybrid-fgsm <= 2.2 -- under the floors, which the CPU kernels make possible: the perturbation
passes run with frozen parameters under `CPUKernels` (training/methods/perturb.py). Each
method is timed with them and, for comparison, without either (plain autograd, as before;
`--no-compare` skips that). The
methods use their registry defaults (PGD-AT k 10), not a recipe. `epoch_time_s` includes each
method's end-of-epoch work (the hybrid's validation measurement of its weight alpha counts as
training time) and the loop's plain validation pass, which every method pays alike.

    python bench/method_speed.py [--train-size 55000] [--methods standard,hybrid,pgd-at]
        [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from contextlib import ExitStack, nullcontext
from unittest import mock

import torch

from robustlab.training import TrainConfig, train
from robustlab.training.methods import perturb


def epoch_time(method: str, train_size: int | None, eps: float, val_size: int, *,
               kernels: bool = True, threads: int | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        if not kernels:  # the perturbation passes as they were: plain autograd, no freeze
            stack.enter_context(mock.patch.object(perturb.CPUKernels, "may_apply",
                                                  staticmethod(lambda m: False)))
            stack.enter_context(mock.patch.object(perturb, "frozen_parameters",
                                                  lambda m: nullcontext()))
        cfg = TrainConfig(dataset="mnist", model="lenet5", method=method, train_size=train_size,
                          epochs=1, val_size=val_size, progress=False, device="cpu",
                          eps=None if method == "standard" else eps, out_dir=f"{tmp}/run",
                          threads=threads)
        return train(cfg).metrics[0]["epoch_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=None,
                        help="training images (default: the full 55,000)")
    parser.add_argument("--methods", default="standard,hybrid-fgsm,hybrid,pgd-at")
    parser.add_argument("--no-compare", action="store_true",
                        help="do not also time each method without the CPU kernels")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--val-size", type=int, default=1000,
                        help="validation images (the hybrid measures its alpha on these)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="interleaved rounds: every method once per round, ratios taken "
                             "within a round (the machine's drift cancels), median reported")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's; 1 on a shared machine)")
    args = parser.parse_args()
    methods = args.methods.split(",")
    if methods[0] != "standard":
        methods = ["standard"] + [m for m in methods if m != "standard"]
    modes = (True,) if args.no_compare else (True, False)
    rounds = [{(m, k): epoch_time(m, args.train_size, args.eps, args.val_size, kernels=k,
                                  threads=args.threads) for k in modes for m in methods}
              for _ in range(args.rounds)]
    print(f"LeNet-5 / MNIST, {args.train_size or 'all'} training images, eps {args.eps}, "
          f"threads {args.threads or torch.get_num_threads()}, {args.rounds} interleaved "
          "rounds; ratio = epoch time / the same round's standard epoch, median [min-max]")
    targets = {"hybrid-fgsm": "(target <= 2.2, floor 2)", "hybrid": "(floor 4)",
               "pgd-at": "(target <= 9, floor 11)"}
    for m in methods:
        line = f"{m:14s}" + "".join(_summary(rounds, m, k) for k in modes)
        print(f"{line}  {targets.get(m, '')}")


def _summary(rounds: list[dict], method: str, kernels: bool) -> str:
    times = [r[method, kernels] for r in rounds]
    ratios = sorted(r[method, kernels] / r["standard", kernels] for r in rounds)
    label = "" if kernels else "   without the kernels"
    return (f"{label} epoch {statistics.median(times):7.2f}s  ratio "
            f"{statistics.median(ratios):5.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]")


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
