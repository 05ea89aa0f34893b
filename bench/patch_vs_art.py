"""Patch attacks: robustlab vs ART (adversarial-robustness-toolbox) on a model robustlab did
NOT build -- a small CNN defined and trained here in plain PyTorch on real MNIST.

    ROBUSTLAB_DATA=/work/shared/data OMP_NUM_THREADS=1 .venv/bin/python bench/patch_vs_art.py \
        [--train-samples 20000] [--n-fit 256] [--n-test 500] [--steps 100] [--size 12]
        [--step-size 0.05] [--art-lr 10 100] [--target 3] [--local-steps 40]
        [--n-local 200] [--threads 1] [--skip universal|local]

Two comparisons, each on the same images, hyper-parameters printed:
  (1) universal patch, TARGETED at `--target`: robustlab `patch-universal` (square patch of
      side `--size`) vs ART `AdversarialPatchNumpy` (ART's PyTorch patch class needs
      torchvision, not installed here) with a fixed scale `size / 28`, no rotation -- ART's
      patch is a disc of that diameter (about pi/4 of the square's area), so robustlab runs
      at the same side and at the side of equal area too. Both fit on the same `--n-fit`
      training images with one update per full pass (robustlab: batch_size = n_fit), `--steps`
      passes. Success = test images not of the target class, correct when clean, predicted
      as the target with the patch at a random location.
  (2) local patch at a fixed window (the image centre): robustlab `patch-local` (eps 1,
      linf, `--local-steps` steps) vs ART `ProjectedGradientDescent` with the same window as
      its `mask`, eps 1, the same step size and steps, one random start. Success =
      untargeted, over the clean-correct images.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.attacks import create_attack
from robustlab.data import load_dataset


class SmallNet(nn.Module):
    """conv16@5x5 -> pool -> conv32@5x5 -> pool -> fc64 -> 10, normalisation inside."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 5), nn.Conv2d(16, 32, 5)
        self.fc1, self.fc2 = nn.Linear(32 * 4 * 4, 64), nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1((x - 0.1307) / 0.3081)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


def train(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> nn.Module:
    """One epoch of Adam (lr 1e-3, batch 64, seeded order) on `x` `[N, 1, 28, 28]`."""
    torch.manual_seed(seed)
    model = SmallNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(x), 64):
        b = perm[i:i + 64]
        loss = F.cross_entropy(model(x[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])


def art_classifier(model: nn.Module):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                             nb_classes=10, clip_values=(0.0, 1.0), channels_first=True)


def art_patch_class() -> type:
    """ART's `AdversarialPatchNumpy`, with a workaround: ART 1.20.1's `reset_patch` accepts only
    a Python float, but the classifier's clip values make the initial value a numpy float32
    (a ValueError in its own constructor)."""
    from art.attacks.evasion import AdversarialPatchNumpy

    class Patched(AdversarialPatchNumpy):
        def reset_patch(self, initial_patch_value):
            if isinstance(initial_patch_value, np.floating):
                initial_patch_value = float(initial_patch_value)
            super().reset_patch(initial_patch_value)

    return Patched


def targeted_rate(model: nn.Module, x_patched: torch.Tensor, ok: torch.Tensor,
                  target: int) -> float:
    """Fraction of the images `ok` (bool `[N]`) predicted as `target` once patched."""
    return (predict(model, x_patched)[ok] == target).float().mean().item()


def universal(model, xf, yf, xt, yt, args) -> None:
    ok = (predict(model, xt) == yt) & (yt != args.target)
    print(f"\n(1) universal patch, targeted at {args.target}: fit on {len(xf)} train images, "
          f"{args.steps} full passes; success over {int(ok.sum())} test images")
    equal_area = round(args.size * math.sqrt(math.pi / 4))
    for side in (args.size, equal_area):
        atk = create_attack("patch-universal", size=side, steps=args.steps,
                            step_size=args.step_size, batch_size=len(xf),
                            target_class=args.target, seed=0)
        t0 = time.perf_counter()
        atk.fit(model, xf, yf)
        fit_s = time.perf_counter() - t0
        rates = []
        for s in range(3):  # the fitted patch at 3 seeded sets of random locations
            placed = create_attack("patch-universal", size=side, seed=s).load_patch(atk.patch)
            rates.append(targeted_rate(model, placed(model, xt, yt), ok, args.target))
        print(f"  robustlab patch-universal  square side {side:2d} ({side * side:3d} px): "
              f"success {np.mean(rates):.3f} (3 placements: "
              f"{', '.join(f'{r:.3f}' for r in rates)}), fit {fit_s:.1f}s "
              f"[step_size {args.step_size}]")
    scale = args.size / 28
    area = math.pi / 4 * args.size ** 2
    for lr in args.art_lr:
        ap = art_patch_class()(art_classifier(model), target=args.target, rotation_max=0.0,
                                   scale_min=scale, scale_max=scale, learning_rate=lr,
                                   max_iter=args.steps, batch_size=len(xf), verbose=False)
        np.random.seed(0)
        t0 = time.perf_counter()
        ap.generate(xf.numpy(), np.full(len(xf), args.target))
        fit_s = time.perf_counter() - t0
        rates = []
        for s in range(3):
            np.random.seed(s)
            rates.append(targeted_rate(
                model, torch.from_numpy(ap.apply_patch(xt.numpy(), scale=scale)).float(),
                ok, args.target))
        print(f"  ART AdversarialPatchNumpy  disc diameter {args.size} (~{area:.0f} px): "
              f"success {np.mean(rates):.3f} (3 placements: "
              f"{', '.join(f'{r:.3f}' for r in rates)}), fit {fit_s:.1f}s [learning_rate {lr}]")


def local(model, x, y, args) -> None:
    ok = predict(model, x) == y
    s = args.size
    top = (28 - s) // 2
    step = 2.5 / args.local_steps
    print(f"\n(2) local patch {s}x{s} at [{top}, {top}], eps 1 (linf), {args.local_steps} steps "
          f"of {step:.4f}, 1 random start; untargeted success over {int(ok.sum())} images")
    atk = create_attack("patch-local", eps=1.0, size=s, location=[top, top],
                        steps=args.local_steps, step_size=step, seed=0)
    t0 = time.perf_counter()
    xa = atk(model, x, y)
    secs = time.perf_counter() - t0
    ours = (predict(model, xa)[ok] != y[ok]).float().mean().item()
    assert bool(atk.within_threat_model(x, xa).all())
    print(f"  robustlab patch-local: success {ours:.3f}, {secs:.1f}s")
    from art.attacks.evasion import ProjectedGradientDescent

    mask = np.zeros(tuple(x.shape), dtype=np.float32)  # ART wants one mask per image
    mask[..., top:top + s, top:top + s] = 1.0
    pgd = ProjectedGradientDescent(art_classifier(model), norm=np.inf, eps=1.0, eps_step=step,
                                   max_iter=args.local_steps, num_random_init=1,
                                   batch_size=256, verbose=False)
    np.random.seed(0)
    t0 = time.perf_counter()
    xr = torch.from_numpy(pgd.generate(x.numpy(), y.numpy(), mask=mask)).float()
    secs = time.perf_counter() - t0
    outside = float((xr - x).abs().mul(1 - torch.from_numpy(mask)).max())
    theirs = (predict(model, xr)[ok] != y[ok]).float().mean().item()
    print(f"  ART ProjectedGradientDescent(mask=window): success {theirs:.3f}, {secs:.1f}s "
          f"(max change outside the window {outside:g})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-samples", type=int, default=20000)
    p.add_argument("--n-fit", type=int, default=256)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--n-local", type=int, default=200)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--step-size", type=float, default=0.05)
    p.add_argument("--art-lr", type=float, nargs="+", default=[10.0, 100.0])
    p.add_argument("--local-steps", type=int, default=40)
    p.add_argument("--size", type=int, default=12)
    p.add_argument("--target", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip", nargs="*", default=[], choices=["universal", "local"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = load_dataset("mnist")
    t0 = time.perf_counter()
    model = train(splits.train.x[:args.train_samples], splits.train.y[:args.train_samples])
    xt, yt = splits.test.x[:args.n_test], splits.test.y[:args.n_test]
    acc = (predict(model, xt) == yt).float().mean().item()
    print(f"SmallNet (defined here, not robustlab's): trained {time.perf_counter() - t0:.1f}s "
          f"on {args.train_samples} images, clean test acc {acc:.3f} on {len(xt)}")
    # the fit images come from the validation split: disjoint from train and test
    xf, yf = splits.val.x[:args.n_fit], splits.val.y[:args.n_fit]
    if "universal" not in args.skip:
        universal(model, xf, yf, xt, yt, args)
    if "local" not in args.skip:
        local(model, xt[:args.n_local], yt[:args.n_local], args)


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
