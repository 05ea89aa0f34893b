"""Attack speed on CPU: robustlab vs torchattacks / ART vs the eager floor, measured side by side.

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/attack_speed.py [--repeats 5]
        [--autoattack] [--models lenet5 smallcnn] [--batch 256] [--workload easy robust]

Two workloads per model, printed apart (a ratio is only worth quoting with its workload):
- easy: trained briefly with cross-entropy on real MNIST, attacked at eps 0.1; most samples
  break in the first steps, so per-sample early stopping removes most of the work;
- robust: trained with FGSM-RS (robustlab's mnist-linf recipe, eps 0.3) and attacked at its
  budget eps 0.3, step eps/4; few samples break, so every step is paid in full. The run
  folders are kept under --cache (a complete run is reused, not retrained); `--robust-run
  smallcnn=RUN` takes a robust model trained elsewhere (2 FGSM-RS epochs do not make SmallCNN
  robust; a PGD-AT one does).
Models are seeded. Every timing is the median over `--repeats` rounds; within a round the contenders
run back to back in a fixed order, so background load hits them alike. Printed ratios > 1
mean robustlab is faster. The machine is shared: quote medians, and rerun when loaded.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustlab.attacks import create_attack
from robustlab.attacks.reference import torchattacks_autoattack
from robustlab.data import load_dataset
from robustlab.models import create_model

ROBUST_EPS = 0.3  # the robust workload's budget: MNIST's standard one


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor, batch_size: int, generator: torch.Generator,
                perturb: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                ) -> float:
    """One pass over (x, y) in batches shuffled by `generator`, cross-entropy, one optimizer
    step per batch; returns the training accuracy. `perturb(xb, yb)` (run in eval mode)
    replaces each batch's inputs, e.g. by adversarial examples for adversarial training."""
    perm = torch.randperm(len(x), generator=generator)
    correct = 0
    model.train()
    for i in range(0, len(x), batch_size):
        b = perm[i : i + batch_size]
        xb = x[b]
        if perturb is not None:
            model.eval()
            xb = perturb(xb, y[b])
            model.train()
        out = model(xb)
        loss = F.cross_entropy(out, y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        correct += int((out.argmax(1) == y[b]).sum())
    return correct / len(x)


def train_briefly(name: str, splits, n_train: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, **splits.info.model_kwargs())
    opt = torch.optim.Adam(model.parameters(), lr=2e-3 if name == "lenet5" else 1e-3)
    x, y = splits.train.x[:n_train], splits.train.y[:n_train]
    train_epoch(model, opt, x, y, 64, torch.Generator().manual_seed(seed))
    return model.eval()


def eager_floor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """`steps` bare forward+backward passes to the input, NCHW, no attack logic."""
    for _ in range(steps):
        xr = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(xr), y)
        torch.autograd.grad(loss, xr)


def timed(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per contender, contenders interleaved within each round."""
    for fn in fns.values():  # warm-up (allocator, oneDNN primitive caches)
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def acc(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def train_robust(name: str, args) -> nn.Module:
    """FGSM-RS at MNIST eps 0.3 with the mnist-linf recipe (robustlab's own loop)."""
    import robustlab

    epochs = 2
    run = robustlab.train(name, "mnist", method="fgsm-rs", eps=ROBUST_EPS, epochs=epochs,
                          train_size=args.train_samples, threads=args.threads,
                          progress=False, resume=True,
                          out_dir=f"{args.cache}/{name}-fgsm-rs-eps{ROBUST_EPS}-e{epochs}")
    return robustlab.load_model(run.run_dir, device="cpu")


def robust_model(name: str, args) -> nn.Module:
    """`--robust-run NAME=RUN` (e.g. a PGD-AT SmallCNN trained on a GPU or overnight) if given,
    else the FGSM-RS model `train_robust` caches."""
    import robustlab

    given = dict(item.split("=", 1) for item in args.robust_run)
    if name in given:
        print(f"robust {name}: the run {given[name]}")
        return robustlab.load_model(given[name], device="cpu")
    return train_robust(name, args)


def workload(name: str, splits, kind: str, args) -> tuple[nn.Module, float]:
    """The model and attack budget of workload `kind` ("easy" / "robust")."""
    if kind == "robust":
        return robust_model(name, args), ROBUST_EPS
    n_train = args.train_samples if name == "lenet5" else args.train_samples // 3
    return train_briefly(name, splits, n_train), args.eps


def bench_model(name: str, splits, kind: str, args) -> None:
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    model, eps = workload(name, splits, kind, args)
    x, y = splits.test.x[: args.batch], splits.test.y[: args.batch]
    steps = 10
    alpha = 2.5 * eps / steps
    print(f"\n== {name}, {kind} workload: batch {len(x)}, clean acc {acc(model, x, y):.3f}, "
          f"Linf eps {eps}, step {alpha:g}")

    rl_pgd = create_attack("pgd", eps=eps, steps=steps, step_size=alpha)
    # every sample takes every step: the kernels' speed alone, no early-stopping gain
    rl_pgd_full = create_attack("pgd", eps=eps, steps=steps, step_size=alpha,
                                stop_on_success=False)
    rl_pgd_nchw = create_attack(
        "pgd", eps=eps, steps=steps, step_size=alpha, memory_format="contiguous"
    )
    rl_pgd_cl = create_attack(
        "pgd", eps=eps, steps=steps, step_size=alpha, memory_format="channels_last"
    )
    ta_pgd = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps)
    clf = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    art_pgd = ProjectedGradientDescent(
        clf,
        norm=np.inf,
        eps=eps,
        eps_step=alpha,
        max_iter=steps,
        num_random_init=1,
        batch_size=len(x),
        verbose=False,
    )
    x_np, y_np = x.numpy(), y.numpy()
    rl_fgsm, ta_fgsm = create_attack("fgsm", eps=eps), torchattacks.FGSM(model, eps=eps)
    rl_cw = create_attack("cw-l2", steps=50, lr=0.01, binary_search_steps=1, c_init=1.0)
    ta_cw = torchattacks.CW(model, c=1.0, kappa=0.0, steps=50, lr=0.01)

    t = timed(
        {
            "floor": lambda: eager_floor(model, x, y, steps),
            "rl_pgd": lambda: rl_pgd(model, x, y),
            "rl_pgd_full": lambda: rl_pgd_full(model, x, y),
            "rl_pgd_nchw": lambda: rl_pgd_nchw(model, x, y),
            "rl_pgd_cl": lambda: rl_pgd_cl(model, x, y),
            "ta_pgd": lambda: ta_pgd(x, y),
            "art_pgd": lambda: art_pgd.generate(x_np, y=y_np),
        },
        args.repeats,
    )
    # FGSM (one pass each) timed in its own rounds: right after ART's NumPy-heavy runs the
    # first contender pays for the allocator and caches, which is noise at this scale
    t.update(timed(
        {"rl_fgsm": lambda: rl_fgsm(model, x, y), "ta_fgsm": lambda: ta_fgsm(x, y)},
        3 * args.repeats,
    ))
    model.eval()
    tc = timed(
        {"rl_cw": lambda: rl_cw(model, x, y), "ta_cw": lambda: ta_cw(x, y)},
        max(args.repeats // 2, 1),
    )
    print("median seconds: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in {**t, **tc}.items()))
    print(
        f"PGD-10 acc: robustlab {acc(model, rl_pgd(model, x, y), y):.3f}, "
        f"torchattacks {acc(model, ta_pgd(x, y), y):.3f}"
    )
    print(
        f"torchattacks / robustlab  PGD-10: {t['ta_pgd'] / t['rl_pgd']:.2f}   "
        f"FGSM: {t['ta_fgsm'] / t['rl_fgsm']:.2f}   CW-L2(50 steps): "
        f"{tc['ta_cw'] / tc['rl_cw']:.2f}"
    )
    print(f"torchattacks / robustlab  PGD-10 without early stopping (stop_on_success=False): "
          f"{t['ta_pgd'] / t['rl_pgd_full']:.2f}")
    print(f"ART / robustlab           PGD-10: {t['art_pgd'] / t['rl_pgd']:.2f}")
    print(f"robustlab PGD-10 / eager NCHW floor (10 fwd+bwd): {t['rl_pgd'] / t['floor']:.2f}")
    print(
        f"robustlab PGD-10 auto vs contiguous: {t['rl_pgd_nchw'] / t['rl_pgd']:.2f}x, "
        f"auto vs channels_last (input + weights): {t['rl_pgd_cl'] / t['rl_pgd']:.2f}x"
    )


def bench_autoattack(splits, args) -> None:
    model = train_briefly("lenet5", splits, args.train_samples)
    x, y = splits.test.x[:500], splits.test.y[:500]
    eps = args.aa_eps
    rl = create_attack("autoattack", eps=eps, norm="linf", seed=0)
    ta = torchattacks_autoattack(model, eps)
    t0 = time.perf_counter()
    rl_acc = acc(model, rl(model, x, y), y)
    t_rl = time.perf_counter() - t0
    t0 = time.perf_counter()
    ta_acc = acc(model, ta(x, y), y)
    t_ta = time.perf_counter() - t0
    print(f"\n== AutoAttack standard, LeNet-5, 500 MNIST test images, Linf eps {eps}")
    print(
        f"robustlab {t_rl:.1f} s (acc {rl_acc:.3f}, {rl.last_breakdown}); "
        f"torchattacks (original counts) {t_ta:.1f} s (acc {ta_acc:.3f})"
    )
    print(f"torchattacks / robustlab AutoAttack: {t_ta / t_rl:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["lenet5", "smallcnn"],
                   help="models to time (none: only --autoattack)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--eps", type=float, default=0.1, help="the easy workload's budget")
    p.add_argument("--workload", nargs="*", default=["easy", "robust"],
                   choices=["easy", "robust"])
    p.add_argument("--cache", default="bench/.cache",
                   help="run folders of the robust workload's models (reused when complete)")
    p.add_argument("--robust-run", nargs="*", default=[], metavar="MODEL=RUN",
                   help="the robust workload's model from a run folder instead of the cached "
                        "FGSM-RS one, e.g. smallcnn=runs/smallcnn-pgd-at (MNIST, eps 0.3)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--train-samples", type=int, default=30_000)
    p.add_argument("--autoattack", action="store_true", help="also time AutoAttack (slow)")
    p.add_argument("--aa-eps", type=float, default=0.1)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (1 avoids OpenMP oversubscription on a loaded box)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    splits = load_dataset("mnist")
    for kind in args.workload:
        for name in args.models:
            bench_model(name, splits, kind, args)
    if args.autoattack:
        bench_autoattack(splits, args)


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
