"""robustlab's L0 attacks (Sparse-RS, sparse-PGD) against an independent implementation on
models robustlab did not train: robust accuracy at k pixels, mean over seeds, and each
attack's wall time with Foolbox's time over Sparse-RS's (`speedup_sparse_rs_vs_foolbox`:
>= 1.0 is the target of issue #35; quote times only from an idle machine).

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/sparse_rs_check.py \
        [--n 1000] [--k 24] [--seeds 3] [--max-queries 10000] [--sparse-pgd-steps 300] \
        [--threads 1] [--out l0.json]

With `--out`, each finished seed of each model is written at once and a rerun with the same
settings skips it (a long run resumes after a kill). To spread the seeds over cores, run one
process per part (`--models`, `--only-seeds`, each with its own `--out`), then
`--merge A.json B.json ... --out ALL.json` gathers their seeds (same settings required) and
prints the means (only a missing seed is computed).

Models, both defined and trained here on real MNIST (plain PyTorch, no robustlab training):
a plain CNN (--epochs 2 of Adam on --train-n 20,000 images) and the same CNN adversarially
trained (Linf PGD-7 at eps 0.3, Madry et al.'s MNIST budget). Reference: Foolbox 3's
PointwiseAttack started from its SaltAndPepperNoiseAttack (a decision-based L0 minimiser;
an image counts as robust at k when the pixels it needs exceed k). "Equal queries":
Sparse-RS gets as many queries per image as Foolbox made forward passes (each over the whole
batch: an upper bound on Foolbox's per image), capped at --max-queries (the paper's 10,000).
The paper's L0 settings are CIFAR-10 and ImageNet (the authors' README: k = 150 on
ImageNet); on MNIST (784 one-channel pixels) pixels and coordinates coincide, so Foolbox's
coordinate count is a pixel count.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.attacks import create_attack
from robustlab.attacks.norms import lp_norm
from robustlab.common.files import atomic_write_text
from robustlab.data import load_dataset


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.3,
             steps: int = 7) -> torch.Tensor:
    """Plain Linf PGD (random start, step 2.5 eps / steps) for the adversarial training."""
    delta = (torch.rand_like(x) * 2 - 1) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
        grad, = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + 2.5 * eps / steps * grad.sign()).clamp(-eps, eps)
    return (x + delta).clamp(0, 1).detach()


def train(x: torch.Tensor, y: torch.Tensor, adversarial: bool, epochs: int = 2) -> nn.Module:
    torch.manual_seed(0)
    model = cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(x), 128):
            b = perm[i:i + 128]
            xb = pgd_linf(model.eval(), x[b], y[b]) if adversarial else x[b]
            loss = F.cross_entropy(model.train()(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def robust(model: nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
           k: int) -> torch.Tensor:
    if bool((lp_norm(x_adv - x, "l0") > k).any()) or float(x_adv.min()) < 0 or \
            float(x_adv.max()) > 1:
        raise SystemExit("a returned point changes more than k pixels or leaves [0, 1]")
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def foolbox_pointwise(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int
                      ) -> tuple[torch.Tensor, int]:
    """(pixels Foolbox's PointwiseAttack needs per image, inf where not fooled; its forward
    passes)."""
    import foolbox as fb

    class Counted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return model(t)

    counted = Counted().eval()
    fmodel = fb.PyTorchModel(counted, bounds=(0, 1))
    np.random.seed(seed)
    torch.manual_seed(seed)
    start = fb.attacks.SaltAndPepperNoiseAttack(steps=1000).run(
        fmodel, x, fb.criteria.Misclassification(y))
    with torch.no_grad():
        fooled = model(start).argmax(1) != y
    pixels = torch.full((len(x),), float("inf"))
    if bool(fooled.any()):
        xs, ys = x[fooled], y[fooled]
        adv = fb.attacks.PointwiseAttack(l2_binary_search=False).run(
            fmodel, xs, fb.criteria.Misclassification(ys), starting_points=start[fooled])
        with torch.no_grad():
            ok = model(adv).argmax(1) != ys
        pixels[fooled.nonzero()[:, 0][ok]] = lp_norm(adv - xs, "l0")[ok]
    return pixels, counted.calls


def seed_row(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ok: torch.Tensor, seed: int,
             args: argparse.Namespace) -> dict[str, object]:
    """One seed: robust accuracy over all of `x` (`ok`: clean-correct) and wall time of
    Foolbox's pointwise attack, Sparse-RS at (at most) Foolbox's queries, and sparse-PGD."""
    acc, seconds = {}, {}
    t0 = time.perf_counter()
    pixels, calls = foolbox_pointwise(model, x[ok], y[ok], seed)
    seconds["foolbox_pointwise"] = time.perf_counter() - t0
    acc["foolbox_pointwise"] = float((pixels > args.k).sum()) / len(x)
    q = min(calls, args.max_queries)
    attacks = {"sparse_rs": create_attack("sparse-rs", eps=args.k, n_queries=q, seed=seed),
               "sparse_pgd": create_attack("sparse-pgd", eps=args.k,
                                           steps=args.sparse_pgd_steps, seed=seed)}
    for name, attack in attacks.items():
        t0 = time.perf_counter()
        adv = attack(model, x[ok], y[ok])
        seconds[name] = time.perf_counter() - t0
        acc[name] = float(robust(model, adv, x[ok], y[ok], args.k).sum()) / len(x)
    return {"queries": q, "clean_correct": int(ok.sum()), "robust_acc": acc,
            "seconds": seconds}


def check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace,
          rows: dict, save) -> dict[str, object]:
    """Every seed (those in `rows` kept from an earlier run; `save()` after each new one) and
    their means, with Foolbox's time over Sparse-RS's (>= 1 is the target)."""
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    for seed in range(args.seeds):
        if args.only_seeds is not None and seed not in args.only_seeds and str(seed) not in rows:
            continue
        if str(seed) not in rows:
            rows[str(seed)] = seed_row(model, x, y, ok, seed, args)
            save()
        r = rows[str(seed)]
        print(f"  seed {seed}: {r['clean_correct']} clean-correct, queries {r['queries']}: "
              + ", ".join(f"{k} {v:.3f}" for k, v in r["robust_acc"].items())
              + "; seconds " + ", ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items()),
              flush=True)
    if any(str(s) not in rows for s in range(args.seeds)):
        return {"clean_acc": ok.float().mean().item(), "seeds_done": sorted(rows)}
    per_seed = [rows[str(s)] for s in range(args.seeds)]
    out: dict[str, object] = {"clean_acc": ok.float().mean().item()}
    for name in per_seed[0]["robust_acc"]:
        out[f"{name}_robust_acc"] = float(np.mean([r["robust_acc"][name] for r in per_seed]))
        out[f"{name}_seconds"] = float(np.mean([r["seconds"][name] for r in per_seed]))
    out["queries"] = float(np.mean([r["queries"] for r in per_seed]))
    # Foolbox's time over Sparse-RS's at (at most) Foolbox's queries: >= 1 is the target
    out["speedup_sparse_rs_vs_foolbox"] = (out["foolbox_pointwise_seconds"]
                                           / out["sparse_rs_seconds"])
    return out


MODELS = {"plain_cnn": False, "linf_at_cnn": True}  # name: adversarially trained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="first N test images")
    p.add_argument("--k", type=int, default=24, help="pixels (eps of norm l0)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-queries", type=int, default=10000)
    p.add_argument("--sparse-pgd-steps", type=int, default=300)
    p.add_argument("--train-n", type=int, default=20000, help="training images per model")
    p.add_argument("--epochs", type=int, default=2, help="training epochs per model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--only-seeds", type=int, nargs="+", default=None,
                   help="compute only these of range(--seeds) (one part of a split run)")
    p.add_argument("--merge", nargs="+", default=[],
                   help="JSONs of other parts (same settings): their seeds are kept")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", root=os.environ.get("ROBUSTLAB_DATA"))
    xt, yt = data.train.x[:args.train_n], data.train.y[:args.train_n]
    x, y = data.test.x[:args.n], data.test.y[:args.n]
    settings = {k: getattr(args, k) for k in ("n", "k", "max_queries", "sparse_pgd_steps",
                                              "train_n", "epochs")}
    data = {"settings": settings, "seeds": {}}
    if args.out and os.path.exists(args.out):
        with open(args.out) as f:
            data = json.load(f)
        if data.get("settings") != settings:
            raise SystemExit(f"{args.out}: written with other settings "
                             f"({data.get('settings')}); use another --out")

    for part in args.merge:
        with open(part) as f:
            other = json.load(f)
        if other.get("settings") != settings:
            raise SystemExit(f"{part}: written with other settings ({other.get('settings')}), "
                             f"not {settings}")
        for name, rows in other["seeds"].items():
            for seed, row in rows.items():
                data["seeds"].setdefault(name, {}).setdefault(seed, row)

    def save() -> None:
        if args.out:
            atomic_write_text(args.out, json.dumps(data, indent=2))

    for name in args.models:
        adversarial = MODELS[name]
        print(f"{name}: training", flush=True)
        model = train(xt, yt, adversarial, args.epochs)
        data[name] = check(model, x, y, args, data["seeds"].setdefault(name, {}), save)
        print(f"{name}: " + json.dumps(data[name]), flush=True)
        save()


if __name__ == "__main__":
    main()
