"""robustlab's AutoAttack against independent ones on the same model and the same test images,
image by image: the robust accuracies, how many images each breaks that robustlab does not (and
the reverse), and the wall times (one process, attacks run one after the other).

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/autoattack_pair.py RUN_FOLDER \
        [--n 1000] [--eps 0.3] [--norm linf] [--reference original torchattacks] \
        [--threads 1] [--out pair.json]

References: `original` is the authors' code (PyPI `pyautoattack`,
`robustlab.attacks.reference.original_autoattack`), `torchattacks` its port in torchattacks 3.5
(`torchattacks_autoattack`, Linf only). Every suite is the standard AutoAttack at its original
counts: APGD-CE 100 steps, APGD-T 100 x 9 targets, FAB-T 100 x 9 targets, Square 5,000 queries
(torchattacks' own defaults are smaller; `torchattacks_autoattack` sets the original ones). The
references apply their components one after the other to the images still robust, robustlab
keeps the per-sample worst case.
An image counts as robust when the model classifies the returned point correctly; every
returned point is checked to lie in the eps-ball and in [0, 1].
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from robustlab.attacks import create_attack
from robustlab.attacks.norms import lp_norm
from robustlab.attacks.reference import original_autoattack, torchattacks_autoattack
from robustlab.runs.load import load_run


def robust_mask(model: torch.nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                eps: float, norm: str, who: str) -> torch.Tensor:
    delta = lp_norm(x_adv - x, norm)
    outside = (x_adv < 0) | (x_adv > 1)
    bad = int((delta > eps * (1 + 1e-5) + 1e-6).sum()) + int(outside.flatten(1).any(1).sum())
    if bad:
        raise SystemExit(f"{who}: {bad} returned points leave the eps-ball or [0, 1]")
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def batched(attack, x: torch.Tensor, y: torch.Tensor, batch_size: int
            ) -> tuple[torch.Tensor, float]:
    """(attack's points for all of x, wall seconds), `batch_size` images per call."""
    t0 = time.perf_counter()
    adv = torch.cat([attack(x[i:i + batch_size], y[i:i + batch_size])
                     for i in range(0, len(x), batch_size)])
    return adv, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a finished robustlab run folder (the model attacked)")
    p.add_argument("--n", type=int, default=1000, help="first N test images")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--norm", choices=["linf", "l2"], default="linf")
    p.add_argument("--reference", nargs="+", choices=["original", "torchattacks"],
                   default=["original", "torchattacks"])
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the summary and per-image masks here")
    args = p.parse_args()
    if args.norm != "linf" and "torchattacks" in args.reference:
        p.error("--reference torchattacks: its AutoAttack port is Linf only here")
    torch.set_num_threads(args.threads)
    run = load_run(args.run, device="cpu")
    model = run.model.eval()
    x, y = run.data.test.x[: args.n].cpu(), run.data.test.y[: args.n].cpu()
    with torch.no_grad():
        clean = model(x).argmax(1) == y

    rl = create_attack("autoattack", eps=args.eps, norm=args.norm, version="standard", seed=0)
    rl_adv, rl_s = batched(lambda xb, yb: rl(model, xb, yb), x, y, args.batch_size)
    rl_robust = robust_mask(model, x, rl_adv, y, args.eps, args.norm, "robustlab") & clean
    summary = {"run": str(args.run), "n": len(x), "eps": args.eps, "norm": args.norm,
               "threads": args.threads, "clean_acc": clean.float().mean().item(),
               "robustlab_acc": rl_robust.float().mean().item(), "robustlab_s": round(rl_s, 1)}
    masks = {"robustlab_robust": rl_robust.int().tolist()}
    for ref in args.reference:
        if ref == "original":
            attack = original_autoattack(model, args.eps, norm=args.norm,
                                         batch_size=args.batch_size)
        else:
            attack = torchattacks_autoattack(model, args.eps, n_classes=run.data.info.num_classes)
        adv, secs = batched(attack, x, y, args.batch_size)
        robust = robust_mask(model, x, adv, y, args.eps, args.norm, ref) & clean
        summary.update({
            f"{ref}_acc": robust.float().mean().item(),
            f"broken_by_robustlab_not_{ref}": int((~rl_robust & robust).sum()),
            f"broken_by_{ref}_not_robustlab": int((rl_robust & ~robust).sum()),
            f"{ref}_s": round(secs, 1), f"{ref}_over_robustlab_time": round(secs / rl_s, 2)})
        masks[f"{ref}_robust"] = robust.int().tolist()
    print(json.dumps(summary, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({**summary, **masks}, f)


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
