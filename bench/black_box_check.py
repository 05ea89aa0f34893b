"""robustlab's black-box attacks on models robustlab did not train: HopSkipJump against ART's
`HopSkipJump` at equal query budgets, SPSA against PGD on a gradient-masked model and
against torchattacks' `SPSA`.

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/black_box_check.py \
        [--n 1000] [--seeds 3] [--art-iters 5] [--spsa-n 1000] [--spsa-steps 100] \
        [--spsa-samples 64] [--threads 1] [--out black_box.json]

Models (plain PyTorch, defined and fitted here on real MNIST, not with robustlab's training):
`mlp` (784-128-10, 2 epochs of Adam on 20,000 images), `cnn` (two conv layers, same fit) and
`cnn-fgsm` (the same CNN fitted with FGSM from a random start at eps 0.1, Wong et al. 2020's
recipe written out here). Images: the first `--n` test images each model classifies correctly.

1. HopSkipJump (l2 eps 1.5, linf eps 0.1): ART's `HopSkipJump` runs `--art-iters` iterations
   image by image (its queries counted by a wrapper around the model); robustlab's runs with
   `max_queries` = the median of ART's queries per image (ART spends the same on every
   image it starts on; fewer where its random start fails), once in the fixed-eps mode
   (success = adversarial within eps) and once with `fixed_eps=False` (its minimal distance).
   Printed per model, norm and seed: both success rates at eps and both median distances.
2. SPSA vs PGD (linf eps 0.15) on each model behind a zero-gradient identity (a custom
   autograd function: the decisions of the model, no gradient signal): success rates of
   PGD-20, SPSA (100 steps, 64 directions) and, for scale, PGD-20 on the unmasked model.
3. SPSA against torchattacks' `SPSA` (advertorch's code) on the first `--spsa-n` images of
   each (unmasked) model at linf eps 0.15, equal steps and directions: both success rates.

Each pair also prints both wall times and their ratio (ART's / robustlab's HopSkipJump in
the minimal-distance mode, the same job as ART's; torchattacks' / robustlab's SPSA): >= 1.0
is the target of issue #35; quote them only from an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from masking import Masked  # bench/masking.py
from torch import nn

from robustlab.attacks import create_attack
from robustlab.attacks.norms import lp_norm
from robustlab.common.files import atomic_write_text
from robustlab.data import load_dataset

EPS = {"l2": 1.5, "linf": 0.1}
SPSA_EPS = 0.15


class Counting(nn.Module):
    """The model as ART sees it: float32 inputs, every row counted."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.rows = net, 0

    def forward(self, x):
        self.rows += len(x)
        return self.net(x.float())


def build(kind: str) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),
                         nn.Conv2d(16, 32, 5, stride=2, padding=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))


def fit(kind: str, x: torch.Tensor, y: torch.Tensor, fgsm_eps: float = 0.0) -> nn.Module:
    """Two epochs of Adam (lr 1e-3, batch 64); with `fgsm_eps`, on FGSM-RS examples."""
    torch.manual_seed(0)
    net = build(kind)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            xb, yb = x[perm[i:i + 64]], y[perm[i:i + 64]]
            if fgsm_eps:
                d = (torch.rand(xb.shape, generator=g) * 2 - 1) * fgsm_eps
                d.requires_grad_(True)
                loss = F.cross_entropy(net((xb + d).clamp(0, 1)), yb)
                (grad,) = torch.autograd.grad(loss, d)
                d = (d + 1.25 * fgsm_eps * grad.sign()).clamp(-fgsm_eps, fgsm_eps).detach()
                xb = (xb + d).clamp(0, 1)
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def art_run(net, x, y, norm, eps, seed, iters):
    """(success within eps, median distance, median queries per image) of ART."""
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import PyTorchClassifier

    counting = Counting(net)
    clf = PyTorchClassifier(counting, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                            nb_classes=10, clip_values=(0.0, 1.0))
    np.random.seed(seed)
    attack = HopSkipJump(clf, norm=2 if norm == "l2" else np.inf, max_iter=iters,
                         max_eval=10000, init_eval=100, init_size=100, verbose=False)
    outs, used = [], []
    for i in range(len(x)):
        counting.rows = 0
        outs.append(torch.from_numpy(attack.generate(x[i:i + 1].numpy())).float())
        used.append(counting.rows)
    adv = torch.cat(outs)
    with torch.no_grad():
        broken = net(adv).argmax(1) != y
    dist = torch.where(broken, lp_norm(adv - x, norm), torch.full((len(x),), float("inf")))
    return ((dist <= eps + 1e-6).float().mean().item(), dist.median().item(),
            int(statistics.median(used)))


def ours_run(net, x, y, norm, eps, seed, budget):
    """(success within eps, median distance, most queries an image used, seconds of the
    minimal-distance run: the same job as ART's)."""
    fixed = create_attack("hop-skip-jump", eps=eps, norm=norm, seed=seed, max_queries=budget)
    with torch.no_grad():
        success = (net(fixed(net, x, y)).argmax(1) != y).float().mean().item()
    free = create_attack("hop-skip-jump", eps=eps, norm=norm, seed=seed, max_queries=budget,
                         fixed_eps=False)
    t0 = time.perf_counter()
    free(net, x, y)
    seconds = time.perf_counter() - t0
    return (success, free.last_distances.median().item(), int(fixed.last_queries.max()),
            seconds)


def spsa_pair(net, x, y, seed: int, steps: int, samples: int) -> dict:
    """robustlab's SPSA against torchattacks' (advertorch's code) at linf SPSA_EPS with equal
    steps, directions (antithetic pairs per step), Adam lr 0.01 and delta 0.01: success rates
    and seconds (torchattacks shares the directions across its batch and keeps no best
    iterate; robustlab stops an image once it is adversarial)."""
    import torchattacks

    ours = create_attack("spsa", eps=SPSA_EPS, steps=steps, samples=samples, seed=seed)
    t0 = time.perf_counter()
    ours_s = success(net, ours, x, y)
    ours_t = time.perf_counter() - t0
    ref = torchattacks.SPSA(net, eps=SPSA_EPS, delta=0.01, lr=0.01, nb_iter=steps,
                            nb_sample=samples, max_batch_size=samples)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    adv = torch.cat([ref(x[i:i + 250], y[i:i + 250]) for i in range(0, len(x), 250)])
    ref_t = time.perf_counter() - t0
    with torch.no_grad():
        ref_s = (net(adv.clamp(0, 1)).argmax(1) != y).float().mean().item()
    return dict(spsa_success=ours_s, torchattacks_spsa_success=ref_s, spsa_s=ours_t,
                torchattacks_spsa_s=ref_t, spsa_speedup=ref_t / ours_t)


def success(net, attack, x, y) -> float:
    adv = torch.cat([attack(net, x[i:i + 250], y[i:i + 250]) for i in range(0, len(x), 250)])
    with torch.no_grad():
        return (net(adv).argmax(1) != y).float().mean().item()


class Rows:
    """The rows measured so far, keyed; with `--out`, written after each row (atomically) and
    read back by a rerun with the same settings, which skips them: a long run resumes."""

    def __init__(self, out: str | None, settings: dict) -> None:
        self.out, self.settings, self.rows = out, settings, {}
        if out and os.path.exists(out):
            with open(out) as f:
                data = json.load(f)
            if data.get("settings") != settings:
                raise SystemExit(f"{out}: written with other settings ({data.get('settings')}); "
                                 "use another --out")
            self.rows = {r["key"]: r for r in data.get("rows", [])}

    def measure(self, key: str, fn) -> None:
        if key in self.rows:
            print(json.dumps(self.rows[key]), "(kept)", flush=True)
            return
        self.rows[key] = {"key": key, **fn()}
        print(json.dumps(self.rows[key]), flush=True)
        self.save()

    def save(self, summary: dict | None = None) -> None:
        if not self.out:
            return
        data = {"settings": self.settings, "rows": list(self.rows.values()),
                **({"summary": summary} if summary is not None else {})}
        atomic_write_text(self.out, json.dumps(data, indent=1))


def hsj_row(kind, net, x, y, norm, eps, seed, art_iters) -> dict:
    t0 = time.perf_counter()
    a_s, a_d, budget = art_run(net, x, y, norm, eps, seed, art_iters)
    a_t = time.perf_counter() - t0
    o_s, o_d, o_q, o_t = ours_run(net, x, y, norm, eps, seed, budget)
    return dict(model=kind, n=len(x), norm=norm, eps=eps, seed=seed, queries=budget,
                art_success=a_s, ours_success=o_s, art_median_dist=a_d, ours_median_dist=o_d,
                ours_max_queries=o_q, art_s=a_t, ours_s=o_t, speedup=a_t / o_t)


def masked_row(kind, net, x, y) -> dict:
    masked = Masked(net).eval()
    return dict(model=kind, n=len(x), norm="linf", eps=SPSA_EPS,
                pgd_masked=success(masked, create_attack("pgd", eps=SPSA_EPS, steps=20), x, y),
                spsa_masked=success(masked, create_attack("spsa", eps=SPSA_EPS), x, y),
                pgd_unmasked=success(net, create_attack("pgd", eps=SPSA_EPS, steps=20), x, y))


def spsa_row(kind, net, x, y, seed, steps, samples) -> dict:
    return dict(model=kind, n=len(x), norm="linf", eps=SPSA_EPS, seed=seed, steps=steps,
                samples=samples, **spsa_pair(net, x, y, seed, steps, samples))


def summarize(rows: list[dict], models: list[str]) -> dict:
    """Means over seeds per model and norm (HopSkipJump) and per model (SPSA pair)."""
    summary = {}
    for kind in models:
        for norm in EPS:
            sel = [r for r in rows if r["model"] == kind and r.get("queries") and
                   r["norm"] == norm]
            if sel:
                summary[f"{kind}/{norm}"] = {
                    k: statistics.mean(r[k] for r in sel)
                    for k in ("art_success", "ours_success", "art_median_dist",
                              "ours_median_dist", "queries", "speedup")}
        sel = [r for r in rows if r["model"] == kind and "spsa_speedup" in r]
        if sel:
            summary[f"{kind}/spsa"] = {k: statistics.mean(r[k] for r in sel)
                                       for k in ("spsa_success", "torchattacks_spsa_success",
                                                 "spsa_speedup")}
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--art-iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", nargs="+", default=["mlp", "cnn", "cnn-fgsm"])
    p.add_argument("--spsa-n", type=int, default=1000,
                   help="images of the SPSA-vs-torchattacks pair (0: skip it)")
    p.add_argument("--spsa-steps", type=int, default=100)
    p.add_argument("--spsa-samples", type=int, default=64)
    p.add_argument("--out", default=None, help="JSON of the rows; a rerun resumes from it")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset("mnist", root=os.environ.get("ROBUSTLAB_DATA"))
    xt, yt = splits.train.x[:20000], splits.train.y[:20000]
    rows = Rows(args.out, {k: getattr(args, k) for k in (
        "n", "art_iters", "spsa_n", "spsa_steps", "spsa_samples")})
    for kind in args.models:
        net = fit(kind.removesuffix("-fgsm"), xt, yt, 0.1 if kind.endswith("-fgsm") else 0.0)
        x, y = splits.test.x[:3 * args.n], splits.test.y[:3 * args.n]
        with torch.no_grad():
            ok = net(x).argmax(1) == y
        x, y = x[ok][:args.n].clone(), y[ok][:args.n].clone()
        for norm, eps in EPS.items():
            for seed in range(args.seeds):
                rows.measure(f"{kind}/hop-skip-jump/{norm}/seed{seed}", partial(
                    hsj_row, kind, net, x, y, norm, eps, seed, args.art_iters))
        rows.measure(f"{kind}/masked", partial(masked_row, kind, net, x, y))
        n = min(args.spsa_n, len(x))
        for seed in range(args.seeds if args.spsa_n else 0):
            rows.measure(f"{kind}/spsa/seed{seed}", partial(
                spsa_row, kind, net, x[:n], y[:n], seed, args.spsa_steps, args.spsa_samples))
    summary = summarize(list(rows.rows.values()), args.models)
    print(json.dumps(summary, indent=1))
    rows.save(summary)


if __name__ == "__main__":
    main()
