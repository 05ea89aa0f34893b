"""robustlab's L1 AutoAttack against the original (PyPI `pyautoattack`, `norm="L1"`, version
"standard") on MNIST models robustlab did not train, image by image: both robust accuracies,
the images only one of them breaks, and the wall times with their ratio.

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/l1_autoattack_pair.py \
        [--n 1000] [--eps 10] [--train-seconds 60] [--adv-epochs 3] [--threads 1] \
        [--models plain l1-adv] [--out l1_pair.json]

Models (plain PyTorch, trained here, seed 0): `plain`, a small CNN trained with Adam for
`--train-seconds` on MNIST's training images; `l1-adv`, the same CNN trained `--adv-epochs`
epochs on L1-PGD examples (10 steps of the sparse L1 steepest ascent of Croce & Hein 2021, at
the evaluation eps, projected onto the L1 ball ∩ [0, 1]; written below). eps 10 on MNIST is
the L1 budget of the L1 literature's MNIST tables (Croce & Hein 2021 use eps 12 on CIFAR-10).

Both sides run the same four components at the original's standard L1 counts: APGD-CE (5
restarts) and APGD-T (5 targets), 100 steps each with the large-eps stages, then FAB-T (9
targets, 100 steps) and Square (5,000 queries) at L1. Columns: clean and robust accuracies,
the images only one side breaks, robustlab's images broken per component
(`breakdown_robustlab`, from `last_breakdown`), the wall times and their ratio. Every
returned point is checked to lie in the L1 ball (relative 1e-5) and [0, 1]. Time it on an
idle machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn

from robustlab.attacks import create_attack
from robustlab.attacks.l1 import l1_sparse_direction, project_l1_box
from robustlab.attacks.reference import original_autoattack
from robustlab.data import load_dataset


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def l1_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
           steps: int = 10) -> torch.Tensor:
    """L1-PGD for training: sparse steepest ascent (top 5 % of coordinates), step eps / 2."""
    topk = torch.full((len(x),), 0.05)
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = project_l1_box(x, adv.detach() + eps / 2 * l1_sparse_direction(grad, topk), eps)
    return adv.detach()


def train(x: torch.Tensor, y: torch.Tensor, *, seconds: float, adv_epochs: int,
          eps: float) -> nn.Module:
    torch.manual_seed(0)
    model = cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0, epoch = time.perf_counter(), 0
    while (adv_epochs and epoch < adv_epochs) or (not adv_epochs and
                                                   time.perf_counter() - t0 < seconds):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            b = perm[i:i + 128]
            xb = l1_pgd(model.eval(), x[b], y[b], eps) if adv_epochs else x[b]
            model.train()
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), y[b]).backward()
            opt.step()
            if not adv_epochs and time.perf_counter() - t0 > seconds:
                break
        epoch += 1
    return model.eval()


def robust_mask(model, x, x_adv, y, eps, who) -> torch.Tensor:
    l1 = (x_adv - x).abs().flatten(1).double().sum(1)
    bad = int((l1 > eps * (1 + 1e-5)).sum()) + int(((x_adv < 0) | (x_adv > 1)).flatten(1)
                                                   .any(1).sum())
    if bad:
        raise SystemExit(f"{who}: {bad} returned points leave the L1 ball or [0, 1]")
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def compare(model, x, y, eps, batch_size) -> dict:
    ours = create_attack("autoattack", eps=eps, norm="l1", seed=0)
    orig = original_autoattack(model, eps, norm="l1", batch_size=batch_size)
    out, breakdown = {}, {}

    def run_ours(xb, yb):
        adv = ours(model, xb, yb)
        for name, broken in ours.last_breakdown.items():
            breakdown[name] = breakdown.get(name, 0) + broken
        return adv

    for who, fn in (("robustlab", run_ours), ("original", orig)):
        t0 = time.perf_counter()
        adv = torch.cat([fn(x[i:i + batch_size], y[i:i + batch_size])
                         for i in range(0, len(x), batch_size)])
        out[who] = (robust_mask(model, x, adv, y, eps, who), time.perf_counter() - t0)
    (rl, t_rl), (og, t_og) = out["robustlab"], out["original"]
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    return {"clean": clean, "robustlab": rl.float().mean().item(),
            "original": og.float().mean().item(),
            "only_original_breaks": int((rl & ~og).sum()),
            "only_robustlab_breaks": int((~rl & og).sum()),
            "breakdown_robustlab": breakdown,
            "seconds_robustlab": t_rl, "seconds_original": t_og,
            "speedup": t_og / t_rl if t_rl else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="first N test images")
    p.add_argument("--eps", type=float, default=10.0, help="L1 budget (pixel units)")
    p.add_argument("--train-seconds", type=float, default=60.0)
    p.add_argument("--adv-epochs", type=int, default=3)
    p.add_argument("--train-images", type=int, default=60000)
    p.add_argument("--models", nargs="+", choices=["plain", "l1-adv"],
                   default=["plain", "l1-adv"])
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", root=os.environ.get("ROBUSTLAB_DATA"))
    xt, yt = data.train.x[:args.train_images], data.train.y[:args.train_images]
    x, y = data.test.x[:args.n], data.test.y[:args.n]
    results = {}
    for name in args.models:
        model = train(xt, yt, seconds=args.train_seconds, eps=args.eps,
                      adv_epochs=args.adv_epochs if name == "l1-adv" else 0)
        for q in model.parameters():
            q.requires_grad_(False)
        results[name] = compare(model, x, y, args.eps, args.batch_size)
        print(name, json.dumps(results[name]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"n": args.n, "eps": args.eps, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
