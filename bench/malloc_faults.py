"""Page faults and speed of CPU input-gradient passes with and without `tune_malloc`
(accel/allocator.py), each in a fresh interpreter (the setting is per process, set once).

    python bench/malloc_faults.py [--passes 20] [--batch 128]

LeNet-5, batch 128, one thread: prints the minor page faults of `--passes` training-time
input-gradient passes (training/methods/perturb.py), the median ms per pass and per PGD-10 call
on the batch, for ROBUSTLAB_MALLOC_TUNING=1 and =0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import json, resource, statistics, sys, time, torch
    from robustlab.accel.allocator import tune_malloc
    from robustlab.models import create_model
    from robustlab.training.methods import perturb
    passes, batch = int(sys.argv[1]), int(sys.argv[2])
    tuned = tune_malloc()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_channels=1, mean=(0.13,), std=(0.31,),
                         image_size=(28, 28))
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    for _ in range(3):
        perturb.input_grad(model, x, y)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(passes):
        t0 = time.perf_counter(); perturb.input_grad(model, x, y)
        times.append(time.perf_counter() - t0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    pgd = []
    for _ in range(5):
        t0 = time.perf_counter(); perturb.pgd(model, x, y, 0.3, "linf", steps=10, step=0.075)
        pgd.append(time.perf_counter() - t0)
    print(json.dumps({"tuned": tuned, "faults": faults,
                      "pass_ms": 1e3 * statistics.median(times),
                      "pgd10_ms": 1e3 * statistics.median(pgd)}))
""")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--passes", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    args = p.parse_args()
    for tuning in ("1", "0"):
        env = {**os.environ, "ROBUSTLAB_MALLOC_TUNING": tuning, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", PROBE, str(args.passes), str(args.batch)],
                             env=env, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"ROBUSTLAB_MALLOC_TUNING={tuning}: tuned {r['tuned']}, {r['faults']} minor page "
              f"faults in {args.passes} passes, {r['pass_ms']:.2f} ms per input-gradient pass, "
              f"{r['pgd10_ms']:.1f} ms per PGD-10 (batch {args.batch})")


if __name__ == "__main__":
    main()
