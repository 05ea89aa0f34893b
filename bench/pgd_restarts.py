"""robustlab's PGD vs torchattacks' PGD on one robust model, seed by seed: are two
single-restart accuracies apart because one attack is weaker, or because of the random start?

    python bench/pgd_restarts.py RUN [--images 256 1000] [--seeds 5] [--eps 0.3] [--steps 10]

RUN is an MNIST run folder (e.g. bench/.cache/lenet5-fgsm-rs-eps0.3-e2, the attack bench's
robust LeNet-5). Step 2.5 eps / steps, one random start per seed on both sides; prints each
seed's accuracy and the per-image worst case over all seeds.
"""

from __future__ import annotations

import argparse

import torch
import torchattacks

import robustlab
from robustlab.attacks import create_attack
from robustlab.data import load_dataset


def correct(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--images", type=int, nargs="+", default=[256, 1000])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(1)
    model = robustlab.load_model(args.run, device="cpu").eval()
    test = load_dataset("mnist").test
    step = 2.5 * args.eps / args.steps
    for n in args.images:
        x, y = test.x[:n], test.y[:n]
        worst = {"robustlab": correct(model, x, y), "torchattacks": correct(model, x, y)}
        print(f"== {n} images, eps {args.eps}, PGD-{args.steps}, step {step:g}; clean "
              f"{worst['robustlab'].float().mean():.3f}")
        for seed in range(args.seeds):
            rl = correct(model, create_attack("pgd", eps=args.eps, steps=args.steps,
                                              step_size=step, seed=seed)(model, x, y), y)
            torch.manual_seed(seed)  # torchattacks draws its start from the global RNG
            ta = correct(model, torchattacks.PGD(model, eps=args.eps, alpha=step,
                                                 steps=args.steps)(x, y), y)
            worst["robustlab"] &= rl
            worst["torchattacks"] &= ta
            print(f"seed {seed}: robustlab {rl.float().mean():.3f}  torchattacks "
                  f"{ta.float().mean():.3f}")
        print(f"worst over {args.seeds} seeds: robustlab {worst['robustlab'].float().mean():.3f}"
              f"  torchattacks {worst['torchattacks'].float().mean():.3f}")


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
