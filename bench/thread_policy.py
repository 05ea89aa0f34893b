"""How many torch threads should a command use? Evaluate-like work (PGD on MNIST-sized images)
at 1, 2, ... threads, on an idle machine and beside busy-loop competitors (issue #37).

    python bench/thread_policy.py [--models lenet5,smallcnn] [--threads 1,2] [--images 200]
                                  [--steps 10] [--rounds 3] [--competitors 1]

Each round times every (model, threads) pair once idle and once with `--competitors`
processes running `while True: pass` (started before, killed after the busy timings), in
alternating order; the table gives the median over rounds and the ratios that decide the
policy in `src/robustlab/common/threads.py`:

- t(2) / t(1) idle     < 1 means a second thread pays off on an idle machine;
- t(2) / t(1) busy     > 1 means it costs when a core is taken (the trap of issue #37);
- busy / idle per threads count: how much the competitor hurts each choice.

Untrained weights (timings do not depend on them). Run it on an otherwise idle machine: the
script prints the 1-minute load average first and warns when other work is running, because
then the "idle" column is not idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch

from robustlab.attacks import create_attack
from robustlab.common.threads import auto_threads, others_busy_now, read_machine
from robustlab.models import create_model


def time_pgd(model, x, y, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    attack = create_attack("pgd", eps=0.3, steps=steps, seed=0)
    create_attack("pgd", eps=0.3, steps=1, seed=0)(model, x, y)  # warm-up: kernels, pool
    t0 = time.perf_counter()
    attack(model, x, y)
    return time.perf_counter() - t0


def competitors(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:  # only the processes this script started, by their handle
        p.kill()
        p.wait()


def measure(args, models: dict, threads: list[int]) -> dict:
    times: dict[tuple[str, int, str], list[float]] = {}
    for r in range(args.rounds):
        order = ("idle", "busy") if r % 2 == 0 else ("busy", "idle")
        for condition in order:
            procs = competitors(args.competitors) if condition == "busy" else []
            try:
                if procs:
                    time.sleep(0.5)  # let the competitors get their cores
                m = read_machine()
                now = others_busy_now(0.5)
                pick = auto_threads(replace(m, omp=None, busy_now=now)).threads
                print(f"  round {r + 1} {condition}: other processes busy on {_f(now)} cores "
                      f"now (load average {_f(m.load)}); auto would pick {pick}", flush=True)
                for name, (model, x, y) in models.items():
                    for t in threads:
                        s = time_pgd(model, x, y, t, args.steps)
                        times.setdefault((name, t, condition), []).append(s)
                        print(f"  round {r + 1} {condition:4} {name:9} {t} thread(s): {s:.2f} s",
                              flush=True)
            finally:
                stop(procs)
    return {k: statistics.median(v) for k, v in times.items()}


def _f(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def report(med: dict, models: list[str], threads: list[int], args) -> None:
    print(f"\nPGD-{args.steps}, {args.images} images, median of {args.rounds} rounds; busy = "
          f"{args.competitors} busy-loop process(es) beside it")
    print(f"{'model':9} {'threads':>7} {'idle s':>8} {'busy s':>8} {'busy/idle':>9}")
    for name in models:
        for t in threads:
            idle, busy = med[(name, t, "idle")], med[(name, t, "busy")]
            print(f"{name:9} {t:>7} {idle:8.2f} {busy:8.2f} {busy / idle:9.2f}")
    base = threads[0]
    for name in models:
        for t in threads[1:]:
            idle = med[(name, t, "idle")] / med[(name, base, "idle")]
            busy = med[(name, t, "busy")] / med[(name, base, "busy")]
            print(f"{name}: t({t}) / t({base}) idle {idle:.2f}, busy {busy:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="lenet5,smallcnn")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--competitors", type=int, default=1)
    args = p.parse_args()
    machine = read_machine()
    load = "none" if machine.load is None else f"{machine.load:.2f}"
    print(f"{machine.cores} cores, 1-minute load {load}, OMP_NUM_THREADS "
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; auto picks "
          f"{auto_threads(machine).threads} now")
    if machine.load is not None and machine.load > 0.5:
        print(f"warning: load {machine.load:.2f}: other processes are running, so the 'idle' "
              "timings are not idle and every ratio below is noisy", flush=True)
    threads = [int(t) for t in args.threads.split(",")]
    torch.manual_seed(0)
    x = torch.rand(args.images, 1, 28, 28)
    y = torch.randint(0, 10, (args.images,))
    models = {}
    for name in args.models.split(","):
        model = create_model(name, num_classes=10, in_channels=1, mean=[0.1307], std=[0.3081],
                             image_size=28).eval()
        models[name] = (model, x, y)
    med = measure(args, models, threads)
    report(med, list(models), threads, args)


if __name__ == "__main__":
    main()
