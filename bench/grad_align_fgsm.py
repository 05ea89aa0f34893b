"""GradAlign against catastrophic overfitting: a single-step method on LeNet-5 / MNIST at
eps 0.3 (`--recipe none`: the TrainConfig defaults, the paper's constant-lr SGD, where the FGSM
hybrid and fgsm-rs overfit catastrophically; or `--recipe mnist-linf`), without GradAlign and
with each given lambda (`--opt grad_align=LAMBDA`), same seed and data. Prints, per run and
epoch, the method's own validation measurements (clean and PGD-10 accuracy on `--val-samples`
validation images, the guard's verdict) and at the end PGD-40 (registry `pgd`, step 0.01) on
the first `--test` test images. The numbers docs/training.md ("GradAlign") quotes.

    python bench/grad_align_fgsm.py [--method hybrid-fgsm] [--recipe none|mnist-linf]
                                    [--lams 0 0.5 2] [--train-size N] [--epochs E]
                                    [--threads 1] [--out DIR]

Training times are not printed: this is about robustness, and the machine may be shared.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from robustlab.attacks import create_attack
from robustlab.data import load_dataset
from robustlab.training import train
from robustlab.training.recipes import configure


def _pgd40(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    x_adv = create_attack("pgd", eps=0.3, steps=40, step_size=0.01, seed=0)(model, x, y)
    with torch.no_grad():
        return clean, float((model(x_adv).argmax(1) == y).float().mean())


def run(args: argparse.Namespace, lam: float, out: Path, test) -> None:
    options = {"val_samples": args.val_samples}
    if lam > 0:
        options["grad_align"] = lam
    fields = {k: v for k, v in (("epochs", args.epochs), ("train_size", args.train_size))
              if v is not None}
    cfg = configure(dict(dataset="mnist", model="lenet5", method=args.method, eps=0.3,
                         method_options=options, seed=args.seed, device="cpu",
                         threads=args.threads, progress=False,
                         out_dir=str(out / f"{args.method}-lam{lam}"), **fields),
                    recipe=args.recipe)
    result = train(cfg)
    for row in result.metrics:
        print(f"{args.method} grad_align={lam} epoch {row['epoch']}: eps {row.get('eps', 0):.3f}"
              f" val clean {row.get('val_clean_acc')} val PGD-10 {row.get('val_adv_acc')}"
              f" CO {row.get('catastrophic_overfitting')}", flush=True)
    x, y = test.x[:args.test], test.y[:args.test]
    clean, pgd = _pgd40(result.model, x, y)
    print(f"{args.method} grad_align={lam}: health {result.summary['health']}, test clean "
          f"{clean:.4f}, PGD-40 {pgd:.4f} ({len(y)} test images)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="hybrid-fgsm")
    parser.add_argument("--recipe", default="none", help="none: the TrainConfig defaults (the "
                        "paper's SGD at constant lr 0.01, 5 epochs); or mnist-linf")
    parser.add_argument("--lams", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's (6)")
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--val-samples", type=int, default=1000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="grad-align-"))
    test = load_dataset("mnist").test
    for lam in args.lams:
        run(args, lam, out, test)


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
