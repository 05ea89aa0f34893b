"""robustlab's minimum-norm attacks (FMN in l0, l1, l2, linf; DDN in l2) against adv-lib's at
equal steps, on two models robustlab did not train (a plain CNN and an adversarially trained
one, both defined and trained here on real MNIST): the median minimal distance of each, their
ratio (robustlab / adv-lib: <= 1.02 is the target of issue #35), and the wall times and their
ratio (adv-lib / robustlab: >= 1.0 is the target; time it on an idle machine only).

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/min_norm_vs_adv_lib.py \
        [--n 1000] [--steps 100] [--train-n 10000] [--threads 1] [--out min_norm.json]
        [--adv-lib-step]

robustlab's FMN takes its default box-aware step (docs/attacks.md); `--adv-lib-step` runs it
with `box_aware=False`, adv-lib's algorithm, whose distances must then equal adv-lib's.

A distance is measured on the returned point: its norm (l0: pixels changed) where the model
misclassifies it, inf where it does not, so a failure counts against the attack in the median.
The images are the first --n test images (every one, misclassified ones at distance 0). FMN
draws no random numbers; DDN only for a zero gradient: one seed is their mean over seeds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys
import time
import types

import torch
import torch.nn.functional as F
from torch import nn

from robustlab.attacks import create_attack
from robustlab.attacks.min_norm import distance, fooled_distances
from robustlab.common.files import atomic_write_text
from robustlab.data import load_dataset

P = {"l0": 0, "l1": 1, "l2": 2, "linf": float("inf")}


def adv_lib_module(module: str):
    """An attack file of adv-lib, loaded by path (its package `__init__` imports torchvision,
    its DDN file visdom: neither is used by the attacks, and adv-lib is installed --no-deps)."""
    import adv_lib

    sys.modules.setdefault("visdom", types.ModuleType("visdom"))
    path = pathlib.Path(adv_lib.__file__).parent / "attacks" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"_adv_lib_{module}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def train(x: torch.Tensor, y: torch.Tensor, *, adversarial: bool, epochs: int,
          seed: int = 0) -> nn.Module:
    """Adam, batch 128; `adversarial`: PGD-AT (Linf eps 0.3, 10 steps of 0.03 from a random
    start; Madry et al. 2018) with robustlab's PGD as the example generator."""
    torch.manual_seed(seed)
    model = cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    pgd = create_attack("pgd", eps=0.3, norm="linf", steps=10, step_size=0.03, seed=seed)
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + epoch))
        for i in range(0, len(x), 128):
            b = perm[i:i + 128]
            xb = pgd(model, x[b], y[b]) if adversarial else x[b]
            model.train()
            loss = F.cross_entropy(model(xb), y[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def measured(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
             norm: str) -> torch.Tensor:
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y
    return fooled_distances(x, x_adv, fooled, norm)


def batched(attack, x: torch.Tensor, y: torch.Tensor, batch_size: int
            ) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    adv = torch.cat([attack(x[i:i + batch_size], y[i:i + batch_size]).detach()
                     for i in range(0, len(x), batch_size)])
    return adv, time.perf_counter() - t0


def compare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, name: str, norm: str,
            steps: int, batch_size: int, box_aware: bool = True) -> dict:
    """One attack, both implementations: medians, ratio, seconds, speed-up (FMN:
    robustlab's default box-aware step, or with `box_aware=False` adv-lib's own step)."""
    if name == "fmn":
        ours = create_attack("fmn", norm=norm, steps=steps, box_aware=box_aware)
        ref_fn = adv_lib_module("fast_minimum_norm").fmn

        def ref(xb, yb):
            return ref_fn(model, xb, yb, norm=P[norm], steps=steps)
    else:
        ours = create_attack("ddn", steps=steps)
        ref_fn = adv_lib_module("decoupled_direction_norm").ddn

        def ref(xb, yb):
            return ref_fn(model, xb, yb, steps=steps)
    ours_adv, ours_s = batched(lambda xb, yb: ours(model, xb, yb), x, y, batch_size)
    ref_adv, ref_s = batched(ref, x, y, batch_size)
    d_ours, d_ref = measured(model, x, y, ours_adv, norm), measured(model, x, y, ref_adv, norm)
    med_ours, med_ref = float(d_ours.median()), float(d_ref.median())
    return {"attack": name, "norm": norm, "steps": steps,
            **({"box_aware": box_aware} if name == "fmn" else {}),
            "median_robustlab": med_ours, "median_adv_lib": med_ref,
            "median_ratio": med_ours / med_ref if med_ref > 0 else None,
            "failed_robustlab": int(torch.isinf(d_ours).sum()),
            "failed_adv_lib": int(torch.isinf(d_ref).sum()),
            "robustlab_s": round(ours_s, 2), "adv_lib_s": round(ref_s, 2),
            "speedup": round(ref_s / ours_s, 2) if ours_s > 0 else None,
            "distance_check": _distance_check(x, ours_adv, d_ours, norm)}


def _distance_check(x: torch.Tensor, x_adv: torch.Tensor, d: torch.Tensor, norm: str) -> float:
    """Largest |distance - measured norm| over the images the attack fooled (0.0 expected)."""
    found = torch.isfinite(d)
    gap = (d[found] - distance(x_adv - x, norm)[found]).abs()
    return float(gap.max()) if gap.numel() else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="first N test images")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--train-n", type=int, default=10000, help="training images per model")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=os.environ.get("ROBUSTLAB_DATA"))
    p.add_argument("--adv-lib-step", action="store_true",
                   help="FMN without robustlab's box-aware step (box_aware=False): adv-lib's "
                        "algorithm, to check the two agree")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", root=args.data)
    xt, yt = data.train.x[:args.train_n], data.train.y[:args.train_n]
    x, y = data.test.x[:args.n], data.test.y[:args.n]
    rows = []
    for kind in ("plain", "pgd-at"):
        model = train(xt, yt, adversarial=kind == "pgd-at", epochs=args.epochs)
        with torch.no_grad():
            clean = float((model(x).argmax(1) == y).double().mean())
        for name, norm in (("fmn", "l0"), ("fmn", "l1"), ("fmn", "l2"), ("fmn", "linf"),
                           ("ddn", "l2")):
            row = {"model": kind, "clean_acc": clean,
                   **compare(model, x, y, name=name, norm=norm, steps=args.steps,
                             batch_size=args.batch_size, box_aware=not args.adv_lib_step)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        atomic_write_text(pathlib.Path(args.out),
                          json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
