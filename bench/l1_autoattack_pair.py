"""robustlab's L1 AutoAttack against the original (PyPI `pyautoattack`, `norm="L1"`, version
"standard") on MNIST models robustlab did not train, image by image: both robust accuracies,
the images only one of them breaks, and the wall times with their ratio.

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/l1_autoattack_pair.py \
        [--n 1000] [--eps 10] [--train-seconds 60 | --plain-epochs 1] [--adv-epochs 3] \
        [--seeds 0 1 2] [--attack autoattack|apgd-ce] [--threads 1] [--models plain l1-adv] \
        [--out l1_pair.json]

Models (plain PyTorch, trained here, seed 0): `plain`, a small CNN trained with Adam for
`--train-seconds` (or, machine-independent, `--plain-epochs` epochs) on MNIST's training
images; `l1-adv`, the same CNN trained `--adv-epochs`
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

`--seeds 0 1 2` runs both sides with each seed on the same models (each attack is random:
restarts, targets' starts, Square's draws) and prints the means. `--attack apgd-ce` compares
APGD-CE alone at the original's standard L1 settings (100 steps, 5 restarts, large eps) with
the original's `APGDAttack`. With `--out`, each finished batch of each side is written at
once and a rerun with the same arguments skips it (a long run resumes after a kill; the
models are retrained, bit-identically on CPU, and the seeds split across processes with
one `--out` each).
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
from robustlab.common.files import atomic_write_text
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
          eps: float, epochs: int = 0) -> nn.Module:
    """`adv_epochs` of L1-PGD training, else `epochs` plain epochs, else plain for `seconds`."""
    torch.manual_seed(0)
    model = cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0, epoch = time.perf_counter(), 0
    if not adv_epochs and epochs:
        seconds = float("inf")
    while (adv_epochs and epoch < adv_epochs) or (not adv_epochs and epochs and
                                                   epoch < epochs) or (
            not adv_epochs and not epochs and time.perf_counter() - t0 < seconds):
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


def original_apgd_ce(model, eps: float, seed: int):
    """The original's APGD-CE at its standard L1 settings (`_set_version("standard")`)."""
    from pyautoattack.autopgd_base import APGDAttack

    ref = APGDAttack(model, norm="L1", eps=eps, n_iter=100, n_restarts=5, seed=seed,
                     use_largereps=True, device=next(model.parameters()).device)
    return lambda x, y: ref.perturb(x, y)


def compare(model, x, y, eps, batch_size, *, seed: int = 0, attack: str = "autoattack",
            partial: dict | None = None, save=lambda: None) -> dict:
    """Both sides on `x` in batches; each finished batch goes into `partial` (keyed
    `who/batch`: robust bits, seconds, robustlab's breakdown) and `save()` is called, so a
    killed run resumes at the batch it was in."""
    if attack == "autoattack":
        ours = create_attack("autoattack", eps=eps, norm="l1", seed=seed)
        orig = original_autoattack(model, eps, norm="l1", batch_size=batch_size, seed=seed)
    else:
        ours = create_attack("apgd-ce", eps=eps, norm="l1", seed=seed, steps=100, restarts=5,
                             large_eps=True)
        orig = original_apgd_ce(model, eps, seed)
    partial = {} if partial is None else partial
    for who, fn in (("robustlab", lambda xb, yb: ours(model, xb, yb)), ("original", orig)):
        for j, i in enumerate(range(0, len(x), batch_size)):
            if f"{who}/{j}" in partial:
                continue
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            t0 = time.perf_counter()
            adv = fn(xb, yb)
            seconds = time.perf_counter() - t0
            robust = robust_mask(model, xb, adv, yb, eps, who)
            partial[f"{who}/{j}"] = {
                "robust": "".join("1" if r else "0" for r in robust.tolist()),
                "seconds": seconds,
                "breakdown": dict(getattr(ours, "last_breakdown", None) or {})
                if who == "robustlab" else {}}
            save()
    out, breakdown = {}, {}
    for who in ("robustlab", "original"):
        parts = [partial[f"{who}/{j}"] for j in range(len(range(0, len(x), batch_size)))]
        out[who] = (torch.tensor([c == "1" for b in parts for c in b["robust"]]),
                    sum(b["seconds"] for b in parts))
        for b in parts:
            for name, broken in b["breakdown"].items():
                breakdown[name] = breakdown.get(name, 0) + broken
    (rl, t_rl), (og, t_og) = out["robustlab"], out["original"]
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    return {"clean": clean, "robustlab": rl.float().mean().item(),
            "original": og.float().mean().item(),
            "robust_bits": {who: "".join("1" if r else "0" for r in m.tolist())
                            for who, m in (("robustlab", rl), ("original", og))},
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
    p.add_argument("--plain-epochs", type=int, default=0,
                   help="train the plain CNN this many epochs instead of --train-seconds")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="attack seeds")
    p.add_argument("--attack", choices=["autoattack", "apgd-ce"], default="autoattack")
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
    header = {"n": args.n, "eps": args.eps, "attack": args.attack,
              "train": [args.train_images, args.train_seconds, args.plain_epochs,
                        args.adv_epochs]}
    results = resumed(args.out, header)

    def save() -> None:  # after each batch and each finished seed (a kill loses one batch)
        if args.out:
            atomic_write_text(args.out, json.dumps({**header, "results": results}, indent=1))
    for name in args.models:
        model = None
        for seed in args.seeds:
            key = f"{name}/seed{seed}"
            if key in results and "partial" not in results[key]:
                print(key, "(kept)", json.dumps(results[key]), flush=True)
                continue
            if model is None:
                model = train(xt, yt, seconds=args.train_seconds, eps=args.eps,
                              adv_epochs=args.adv_epochs if name == "l1-adv" else 0,
                              epochs=args.plain_epochs)
                for q in model.parameters():
                    q.requires_grad_(False)
            partial = results.setdefault(key, {"partial": {}})["partial"]
            results[key] = compare(model, x, y, args.eps, args.batch_size, seed=seed,
                                   attack=args.attack, partial=partial, save=save)
            print(key, json.dumps(results[key]), flush=True)
            save()
        runs = [results[f"{name}/seed{s}"] for s in args.seeds]
        mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("robustlab", "original")}
        print(f"{name}: mean over {len(runs)} seeds: robustlab {mean['robustlab']:.4f} "
              f"original {mean['original']:.4f} (difference "
              f"{100 * (mean['robustlab'] - mean['original']):+.2f} points)", flush=True)


def resumed(out: str | None, header: dict) -> dict:
    """The finished (model, seed) results of an earlier run with the same settings in `out`."""
    if not out or not os.path.exists(out):
        return {}
    with open(out) as f:
        data = json.load(f)
    if {k: data.get(k) for k in header} != header:
        raise SystemExit(f"{out}: written by a run with other settings "
                         f"({ {k: data.get(k) for k in header} }); use another --out")
    return data.get("results", {})


if __name__ == "__main__":
    main()
