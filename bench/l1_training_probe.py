"""The probe behind the `mnist-l1` recipe (docs/methods.md, "Recipe mnist-l1"): short L1
adversarial-training runs of LeNet-5 on a subset of real MNIST at L1 eps 10, each evaluated on
the first `--n` test images: clean accuracy and accuracy under robustlab's APGD-CE at l1
(`--apgd-steps` steps, seed 0; the L1 AutoAttack's first component).

    ROBUSTLAB_DATA=/work/shared/data OMP_NUM_THREADS=1 .venv/bin/python \
        bench/l1_training_probe.py [--train-size 10000] [--epochs 3] [--n 500] \
        [--apgd-steps 100] [--seeds 0] [--variants standard pgd10 pgd10-rs pgd5 hybrid10] \
        [--out probe.json]

`--run RUN [--autoattack]` instead evaluates a finished run folder (e.g. the recipe's own
`robustlab train --dataset mnist --method pgd-at --norm l1 --eps 10`): clean, APGD-CE at l1
and, with `--autoattack`, robustlab's L1 AutoAttack (its standard composition at l1) on the
first `--n` test images.

Each variant is a `robustlab.train` config (below) over the recipe's optimisation: one-cycle
SGD (peak lr 0.05), batch 128, weight decay 5e-4, the budget warm-up from eps/10 over the
first third of the run (`recipe="none"` with these fields written out, so the probe does not
depend on the recipe it chooses). Accuracies only; its times are not speed results.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import torch

from robustlab.attacks import create_attack
from robustlab.data import load_dataset
from robustlab.training import TrainConfig, train

EPS = 10.0
BASE = dict(dataset="mnist", model="lenet5", norm="l1", optimizer="sgd", lr=0.05,
            momentum=0.9, weight_decay=5e-4, lr_schedule="onecycle", batch_size=128,
            val_size=1000, recipe="none", progress=False, device="cpu", threads=1)
VARIANTS = {
    "standard": dict(method="standard"),
    "pgd10": dict(method="pgd-at", method_options={"steps": 10, "random_start": False}),
    "pgd10-rs": dict(method="pgd-at", method_options={"steps": 10, "random_start": True}),
    "pgd5": dict(method="pgd-at", method_options={"steps": 5, "random_start": False}),
    "hybrid10": dict(method="hybrid", method_options={"steps": 10, "per_step": True,
                                                       "val_samples": 200}),
}


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def probe(name: str, seed: int, args, test) -> dict:
    fields = {**BASE, **VARIANTS[name], "eps": EPS, "epochs": args.epochs, "seed": seed,
              "train_size": args.train_size}
    if fields["method"] != "standard":
        fields["eps_warmup"] = round(args.epochs / 3, 6)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(TrainConfig(**fields, out_dir=os.path.join(tmp, "run")))
        model = result.model.eval()
    x, y = test.x[:args.n], test.y[:args.n]
    attack = create_attack("apgd-ce", eps=EPS, norm="l1", steps=args.apgd_steps, seed=0)
    x_adv = attack(model, x, y)
    return {"variant": name, "seed": seed, "config": {k: v for k, v in fields.items()
                                                       if k not in ("progress", "device")},
            "clean": accuracy(model, x, y), "apgd_ce_l1": accuracy(model, x_adv, y),
            "health": result.summary.get("health")}


def evaluate_run(args, test) -> dict:
    import robustlab

    model = robustlab.load_model(args.run, device="cpu").eval()
    x, y = test.x[:args.n], test.y[:args.n]
    row = {"run": args.run, "n": args.n, "clean": accuracy(model, x, y)}
    attacks = {"apgd_ce_l1": create_attack("apgd-ce", eps=EPS, norm="l1",
                                           steps=args.apgd_steps, seed=0)}
    if args.autoattack:
        attacks["autoattack_l1"] = create_attack("autoattack", eps=EPS, norm="l1", seed=0)
    for name, attack in attacks.items():
        row[name] = accuracy(model, attack(model, x, y), y)
        print(f"{name}: {row[name]:.3f} (clean {row['clean']:.3f}, n {args.n})", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-size", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--apgd-steps", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--run", default=None, help="evaluate this finished run folder instead")
    ap.add_argument("--autoattack", action="store_true", help="with --run: L1 AutoAttack too")
    args = ap.parse_args()
    torch.set_num_threads(1)
    test = load_dataset("mnist").test
    if args.run:
        row = evaluate_run(args, test)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(row, f, indent=1)
        return
    rows = []
    for name in args.variants:
        for seed in args.seeds:
            rows.append(probe(name, seed, args, test))
            r = rows[-1]
            print(f"{name:10s} seed {seed}: clean {r['clean']:.3f}  APGD-CE-L1 "
                  f"{r['apgd_ce_l1']:.3f}  ({r['health']})", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"eps": EPS, "n": args.n, "apgd_steps": args.apgd_steps,
                       "train_size": args.train_size, "epochs": args.epochs, "rows": rows},
                      f, indent=1)


if __name__ == "__main__":
    main()
