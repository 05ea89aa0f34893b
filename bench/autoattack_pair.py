"""robustlab's AutoAttack and torchattacks' on the same model and the same test images, image
by image: both robust accuracies, how many images each breaks that the other does not, and
both wall times (one process, attacks run one after the other).

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/autoattack_pair.py RUN_FOLDER \
        [--n 1000] [--eps 0.3] [--threads 1] [--out pair.json]

Both suites are the standard Linf AutoAttack at its original counts: APGD-CE 100 steps,
APGD-T 100 x 9 targets, FAB-T 100 x 9 targets, Square 5,000 queries (torchattacks' own
defaults are smaller; `robustlab.attacks.reference.torchattacks_autoattack` sets the original
ones). torchattacks 3.5 applies its components one after the other to the images still robust
(`MultiAttack`), as the original AutoAttack does; robustlab keeps the per-sample worst case.
An image counts as robust when the model classifies the returned point correctly; every
returned point is checked to lie in the eps-ball and in [0, 1].
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from robustlab.attacks import create_attack
from robustlab.attacks.reference import torchattacks_autoattack
from robustlab.runs.load import load_run


def robust_mask(model: torch.nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                eps: float, who: str) -> torch.Tensor:
    delta = (x_adv - x).abs().flatten(1).amax(1)
    bad = int((delta > eps + 1e-6).sum()) + int(((x_adv < 0) | (x_adv > 1)).flatten(1).any(1).sum())
    if bad:
        raise SystemExit(f"{who}: {bad} returned points leave the eps-ball or [0, 1]")
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a finished robustlab run folder (the model attacked)")
    p.add_argument("--n", type=int, default=1000, help="first N test images")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the summary and per-image masks here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = load_run(args.run, device="cpu")
    model = run.model.eval()
    x, y = run.data.test.x[: args.n].cpu(), run.data.test.y[: args.n].cpu()
    with torch.no_grad():
        clean = model(x).argmax(1) == y

    rl = create_attack("autoattack", eps=args.eps, norm="linf", version="standard", seed=0)
    t0 = time.perf_counter()
    rl_adv = torch.cat([rl(model, x[i:i + args.batch_size], y[i:i + args.batch_size])
                        for i in range(0, len(x), args.batch_size)])
    rl_s = time.perf_counter() - t0
    rl_robust = robust_mask(model, x, rl_adv, y, args.eps, "robustlab") & clean

    ta = torchattacks_autoattack(model, args.eps, n_classes=run.data.info.num_classes)
    t0 = time.perf_counter()
    ta_adv = torch.cat([ta(x[i:i + args.batch_size], y[i:i + args.batch_size])
                        for i in range(0, len(x), args.batch_size)])
    ta_s = time.perf_counter() - t0
    ta_robust = robust_mask(model, x, ta_adv, y, args.eps, "torchattacks") & clean

    n = len(x)
    summary = {
        "run": str(args.run), "n": n, "eps": args.eps, "threads": args.threads,
        "clean_acc": clean.float().mean().item(),
        "robustlab_acc": rl_robust.float().mean().item(),
        "torchattacks_acc": ta_robust.float().mean().item(),
        "both_robust": int((rl_robust & ta_robust).sum()),
        "broken_by_robustlab_only": int((~rl_robust & ta_robust).sum()),
        "broken_by_torchattacks_only": int((rl_robust & ~ta_robust).sum()),
        "robustlab_s": round(rl_s, 1), "torchattacks_s": round(ta_s, 1),
        "torchattacks_over_robustlab_time": round(ta_s / rl_s, 2),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**summary, "robustlab_robust": rl_robust.int().tolist(),
                       "torchattacks_robust": ta_robust.int().tolist()}, f)


if __name__ == "__main__":
    main()
