"""Attack strength: robustlab vs independent implementations (torchattacks, and the original
AutoAttack of PyPI `pyautoattack`) on models robustlab did NOT train -- an adversarially
trained MNIST CNN (where weak attacks show) and a standard-trained CNN with BatchNorm.

    ROBUSTLAB_DATA=/work/shared/data .venv/bin/python bench/strength_check.py \
        [--n 500] [--n-expensive 200] [--square-queries 1000] [--models at bn]
        [--skip autoattack cw-l2 ...]
        [--train-samples 20000] [--at-epochs 5] [--threads 1] [--cache /tmp/strength_models]

Both models are defined and trained here in plain PyTorch (seeded; no robustlab training
code, no robustlab model registry), normalisation inside the model:
  (a) `at`: a small CNN trained with PGD-AT (Linf eps 0.3, eps linearly warmed up over the
      first epochs, PGD-7 inner maximisation with a random start).
  (b) `bn`: a CNN with BatchNorm, standard training.
For every attack the robustlab and the reference (torchattacks; for the two "AutoAttack (orig)"
rows, Linf and L2, the authors' own code) hyper-parameters are printed
and matched as closely as the two APIs allow; both run on the same test images. Verdict:
robustlab is "no weaker" when its robust accuracy <= reference + 0.5 point. Every robustlab
output is asserted to lie in [0, 1] and (bounded attacks) in the eps-ball.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from attack_speed import train_epoch  # the benches' one training loop
from torch import nn

from robustlab.attacks import create_attack
from robustlab.attacks.reference import original_autoattack, torchattacks_autoattack
from robustlab.data import load_dataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
TOL = 0.005  # 0.5 point


# ------------------------------------------------------------------------------- the models
class Normalize(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MNIST_MEAN).view(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor(MNIST_STD).view(1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ATNet(nn.Module):
    """conv16@4x4/2 -> conv32@4x4/2 -> fc100 -> fc10 (the small MNIST net of Wong & Kolter
    2018), ReLUs; cheap enough to adversarially train on 2 CPU cores."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Normalize(),
            nn.Conv2d(1, 16, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BNNet(nn.Module):
    """conv16@3x3-BN-ReLU-pool -> conv32@3x3-BN-ReLU-pool -> fc128-BN-ReLU -> fc10."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            Normalize(),
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.BatchNorm1d(128), nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pgd_train_linf(model, x, y, eps: float, steps: int, generator) -> torch.Tensor:
    """Plain PGD (random start, sign steps of 2.5 * eps / steps) for the training loop."""
    if eps <= 0:
        return x
    alpha = 2.5 * eps / steps
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1) * eps
    xa = (x + delta).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        (g,) = torch.autograd.grad(loss, xa)
        xa = torch.min(torch.max(xa.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return xa.detach()


def seeded_setup(model_cls: type[nn.Module], splits, args, seed: int):
    """(model, Adam optimizer, x, y, batch-order generator), all seeded."""
    torch.manual_seed(seed)
    model = model_cls()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = splits.train.x[: args.train_samples], splits.train.y[: args.train_samples]
    return model, opt, x, y, torch.Generator().manual_seed(seed)


def train_at(splits, args, seed: int = 0) -> nn.Module:
    model, opt, x, y, gen = seeded_setup(ATNet, splits, args, seed)
    bs = 100
    warm = args.at_warmup_epochs * ((len(x) + bs - 1) // bs)
    step = 0
    eps = args.at_eps

    def adversarial(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        nonlocal step, eps  # eps warms up linearly per batch over the first epochs
        eps = args.at_eps * min(1.0, (step + 1) / warm) if warm else args.at_eps
        step += 1
        return pgd_train_linf(model, xb, yb, eps, args.at_steps, gen)

    for ep in range(args.at_epochs):
        t0 = time.perf_counter()
        adv_acc = train_epoch(model, opt, x, y, bs, gen, perturb=adversarial)
        if ep == args.at_epochs - 2:  # decay the learning rate for the last epoch
            for grp in opt.param_groups:
                grp["lr"] = 3e-4
        print(f"  AT epoch {ep + 1}/{args.at_epochs}: eps {eps:.3f}, train adv acc "
              f"{adv_acc:.3f}, {time.perf_counter() - t0:.0f} s", flush=True)
    return model.eval()


def train_standard(splits, args, seed: int = 0) -> nn.Module:
    model, opt, x, y, gen = seeded_setup(BNNet, splits, args, seed)
    for _ in range(args.std_epochs):
        train_epoch(model, opt, x, y, 64, gen)
    return model.eval()


def get_model(kind: str, splits, args) -> nn.Module:
    path = None
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
        tag = (f"{kind}_n{args.train_samples}_e{args.at_epochs}_w{args.at_warmup_epochs}"
               f"_s{args.at_steps}" if kind == "at" else f"{kind}_n{args.train_samples}"
               f"_e{args.std_epochs}")
        path = os.path.join(args.cache, tag + ".pt")
    model = ATNet() if kind == "at" else BNNet()
    if path and os.path.exists(path):
        model.load_state_dict(torch.load(path))
        print(f"  loaded {path}")
        return model.eval()
    t0 = time.perf_counter()
    model = train_at(splits, args) if kind == "at" else train_standard(splits, args)
    print(f"  trained {kind} in {time.perf_counter() - t0:.0f} s")
    if path:
        torch.save(model.state_dict(), path)
    return model.eval()


# ------------------------------------------------------------------------------- helpers
def predict(model, x) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])


def acc(model, x, y) -> float:
    return (predict(model, x) == y).float().mean().item()


def lp(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def check_valid(x_adv, x, eps: float | None, norm: str, who: str) -> int:
    """Assert (robustlab) / count (reference) outputs outside [0, 1] or the eps-ball."""
    bad = (x_adv.flatten(1).amin(1) < 0) | (x_adv.flatten(1).amax(1) > 1)
    bad |= ~torch.isfinite(x_adv.flatten(1)).all(1)
    if eps is not None:
        n = lp(x_adv - x, norm)
        bad |= n > eps * (1 + 1e-5) + 1e-6
    return int(bad.sum())


@dataclass
class Row:
    name: str
    rl_acc: float
    ref_acc: float
    rl_s: float
    ref_s: float
    n: int = 0
    ref_invalid: int = 0
    note: str = ""
    extra: dict = field(default_factory=dict)
    # mean robust accuracy (robustlab, reference) over seed 0 and the recheck seeds, when a
    # seeded attack first came out weaker: one image of 150 is 0.67 pt, above the tolerance
    seed_means: tuple[float, float] | None = None
    known_difference: str = ""  # a documented reason the two implementations differ


def compare(name, model, x, y, eps, norm, rl_attack, ref_fn: Callable[[], torch.Tensor],
            rl_desc: str, ref_desc: str, bounded: bool = True,
            reseed: Callable[[int], tuple] | None = None, recheck: int = 0) -> Row:
    """Run both sides on (x, y). `reseed(s)` -> (robustlab attack, reference thunk) with seed
    s: when robustlab comes out weaker, both are rerun with seeds 1..`recheck` and the
    verdict uses the means (the two libraries draw different random numbers)."""
    print(f"\n-- {name}\n   robustlab : {rl_desc}\n   reference : {ref_desc}", flush=True)
    t0 = time.perf_counter()
    x_rl = rl_attack(model, x, y)
    t_rl = time.perf_counter() - t0
    n_bad = check_valid(x_rl, x, eps if bounded else None, norm, "robustlab")
    assert n_bad == 0, f"{name}: {n_bad} robustlab outputs outside [0,1] / the eps-ball"
    torch.manual_seed(0)
    t0 = time.perf_counter()
    x_ref = ref_fn()
    t_ref = time.perf_counter() - t0
    ref_bad = check_valid(x_ref, x, eps if bounded else None, norm, "reference")
    pred_rl, pred_ref = predict(model, x_rl), predict(model, x_ref)
    row = Row(name, (pred_rl == y).float().mean().item(), (pred_ref == y).float().mean().item(),
              t_rl, t_ref, len(x), ref_bad)
    row.extra["x_rl"], row.extra["x_ref"] = x_rl, x_ref
    # samples only one side broke: robustlab-missed ones reveal weaknesses
    rl_only = int(((pred_rl != y) & (pred_ref == y)).sum())
    ref_only = int(((pred_rl == y) & (pred_ref != y)).sum())
    row.note = f"broken only by rl {rl_only}, only by ref {ref_only}"
    print(f"   acc robustlab {row.rl_acc:.4f} ({t_rl:.1f} s), reference {row.ref_acc:.4f} "
          f"({t_ref:.1f} s); {row.note}; reference outputs invalid: {ref_bad}", flush=True)
    if reseed is not None and recheck > 0 and row.rl_acc > row.ref_acc + TOL + 1e-9:
        rl_accs, ref_accs = [row.rl_acc], [row.ref_acc]
        for seed in range(1, recheck + 1):
            rl_s, ref_s = reseed(seed)
            rl_accs.append(acc(model, rl_s(model, x, y), y))
            torch.manual_seed(seed)
            ref_accs.append(acc(model, ref_s(), y))
        row.seed_means = (sum(rl_accs) / len(rl_accs), sum(ref_accs) / len(ref_accs))
        row.extra["cw"] = (f"seeds 0-{recheck}: robustlab {[round(a, 4) for a in rl_accs]}, "
                           f"reference {[round(a, 4) for a in ref_accs]}")
        print("   weaker at seed 0; " + row.extra["cw"], flush=True)
    return row


def compare_seeded(name, model, x, y, eps, norm, make: Callable[[int], tuple], rl_desc: str,
                   ref_desc: str, recheck: int) -> Row:
    """`compare` for a seeded attack: `make(seed)` -> (robustlab attack, reference thunk);
    seed 0 is the comparison, seeds 1..`recheck` the recheck when robustlab comes out weaker."""
    rl_attack, ref_fn = make(0)
    return compare(name, model, x, y, eps, norm, rl_attack, ref_fn, rl_desc, ref_desc,
                   reseed=make, recheck=recheck)


# ------------------------------------------------------------------------------- the suite
def run_suite(kind: str, model, x, y, args) -> list[Row]:
    import torchattacks

    linf = args.at_eval_eps if kind == "at" else args.std_eval_eps
    l2 = args.at_l2_eps if kind == "at" else args.std_l2_eps
    skip = set(args.skip)
    rows: list[Row] = []
    ne = min(len(x), args.n_expensive)
    xe, ye = x[:ne], y[:ne]  # APGD-T, FAB-T, Square, CW-L2, AutoAttack run on these
    ce = f"Linf eps {linf}"
    rk = {"recheck": args.recheck_seeds}

    if "fgsm" not in skip:
        rows.append(compare(
            "FGSM", model, x, y, linf, "linf", create_attack("fgsm", eps=linf),
            lambda: torchattacks.FGSM(model, eps=linf)(x, y),
            f"fgsm {ce}, loss ce", f"torchattacks.FGSM(eps={linf})"))
    if "pgd" not in skip:
        steps = 40
        alpha = 2.5 * linf / steps
        rows.append(compare_seeded(
            "PGD-40", model, x, y, linf, "linf",
            lambda s: (  # torchattacks' PGD draws from the global RNG, seeded by compare
                create_attack("pgd", eps=linf, norm="linf", steps=steps, step_size=alpha,
                              restarts=1, seed=s),
                lambda: torchattacks.PGD(model, eps=linf, alpha=alpha, steps=steps,
                                         random_start=True)(x, y)),
            f"pgd {ce}, steps {steps}, step_size {alpha:.5f}, restarts 1, random start, seed 0",
            f"torchattacks.PGD(eps={linf}, alpha={alpha:.5f}, steps={steps}, "
            "random_start=True)", **rk))
    if "mifgsm" not in skip:
        steps = 10
        alpha = linf / steps
        rows.append(compare(
            "MI-FGSM-10", model, x, y, linf, "linf",
            create_attack("mifgsm", eps=linf, steps=steps, step_size=alpha, decay=1.0),
            lambda: torchattacks.MIFGSM(model, eps=linf, alpha=alpha, steps=steps,
                                        decay=1.0)(x, y),
            f"mifgsm {ce}, steps {steps}, step_size {alpha:.4f}, decay 1.0",
            f"torchattacks.MIFGSM(eps={linf}, alpha={alpha:.4f}, steps={steps}, decay=1.0)"))
    if "apgd-ce" not in skip:
        rows.append(compare_seeded(
            "APGD-CE", model, x, y, linf, "linf",
            lambda s: (
                create_attack("apgd-ce", eps=linf, norm="linf", steps=100, restarts=1, seed=s),
                lambda: torchattacks.APGD(model, norm="Linf", eps=linf, steps=100, n_restarts=1,
                                          loss="ce", seed=s)(x, y)),
            f"apgd-ce {ce}, steps 100, restarts 1, rho 0.75, momentum 0.75, seed 0",
            f"torchattacks.APGD(norm='Linf', eps={linf}, steps=100, n_restarts=1, loss='ce', "
            "rho=0.75, seed=0)", **rk))
    if "apgd-t" not in skip:
        rows.append(compare_seeded(
            "APGD-T", model, xe, ye, linf, "linf",
            lambda s: (
                create_attack("apgd-t", eps=linf, norm="linf", steps=100, restarts=1,
                              n_target_classes=9, seed=s),
                lambda: torchattacks.APGDT(model, norm="Linf", eps=linf, steps=100,
                                           n_restarts=1, n_classes=10, seed=s)(xe, ye)),
            f"apgd-t {ce}, steps 100, restarts 1, 9 target classes, seed 0",
            f"torchattacks.APGDT(norm='Linf', eps={linf}, steps=100, n_restarts=1, "
            "n_classes=10 (9 targets), seed=0)", **rk))
    if "fab-t" not in skip:
        rows.append(compare_seeded(
            "FAB-T", model, xe, ye, linf, "linf",
            lambda s: (
                create_attack("fab-t", eps=linf, norm="linf", steps=100, restarts=1,
                              n_target_classes=9, alpha_max=0.1, eta=1.05, beta=0.9, seed=s),
                lambda: torchattacks.FAB(model, norm="Linf", eps=linf, steps=100, n_restarts=1,
                                         alpha_max=0.1, eta=1.05, beta=0.9, multi_targeted=True,
                                         n_classes=10, seed=s)(xe, ye)),
            f"fab-t {ce}, steps 100, restarts 1, 9 targets, alpha_max 0.1, eta 1.05, "
            "beta 0.9, seed 0",
            f"torchattacks.FAB(norm='Linf', eps={linf}, steps=100, n_restarts=1, "
            "multi_targeted=True, n_classes=10, alpha_max=0.1, eta=1.05, beta=0.9, seed=0)",
            **rk))
    if "square" not in skip:
        q = args.square_queries
        rows.append(compare_seeded(
            f"Square-{q}", model, xe, ye, linf, "linf",
            lambda s: (
                create_attack("square", eps=linf, norm="linf", n_queries=q, p_init=0.8,
                              n_restarts=1, seed=s),
                lambda: torchattacks.Square(model, norm="Linf", eps=linf, n_queries=q,
                                            n_restarts=1, p_init=0.8, loss="margin",
                                            resc_schedule=True, seed=s)(xe, ye)),
            f"square {ce}, n_queries {q}, p_init 0.8, restarts 1, margin loss, seed 0",
            f"torchattacks.Square(norm='Linf', eps={linf}, n_queries={q}, n_restarts=1, "
            "p_init=0.8, loss='margin', resc_schedule=True, seed=0)", **rk))
    if "pgd-l2" not in skip:
        steps = 40
        alpha = 2.5 * l2 / steps
        rows.append(compare_seeded(
            "PGD-L2-40", model, x, y, l2, "l2",
            lambda s: (
                create_attack("pgd", eps=l2, norm="l2", steps=steps, step_size=alpha, seed=s),
                lambda: torchattacks.PGDL2(model, eps=l2, alpha=alpha, steps=steps,
                                           random_start=True)(x, y)),
            f"pgd L2 eps {l2}, steps {steps}, step_size {alpha:.4f}, random start, seed 0",
            f"torchattacks.PGDL2(eps={l2}, alpha={alpha:.4f}, steps={steps}, "
            "random_start=True)", **rk))
    if "cw-l2" not in skip:
        n_cw = ne
        xc, yc = x[:n_cw], y[:n_cw]
        for label, rl_kw in (
            ("CW-L2 matched", dict(c_init=1.0, binary_search_steps=1, steps=100, lr=0.01)),
            ("CW-L2 rl-default", dict()),
        ):
            att = create_attack("cw-l2", kappa=0.0, **rl_kw)
            desc = ", ".join(f"{k} {v}" for k, v in {
                "kappa": att.kappa, "c_init": att.c_init, "binary_search_steps":
                att.binary_search_steps, "steps": att.steps, "lr": att.lr,
                "abort_early": att.abort_early}.items())
            row = compare(
                label, model, xc, yc, None, "l2", att,
                lambda: torchattacks.CW(model, c=1.0, kappa=0.0, steps=100, lr=0.01)(xc, yc),
                f"cw-l2 {desc} (on {n_cw} images)",
                "torchattacks.CW(c=1, kappa=0, steps=100, lr=0.01) (no binary search)",
                bounded=False)
            x_rl, x_ref = row.extra["x_rl"], row.extra["x_ref"]
            ok_rl = predict(model, x_rl) != yc
            ok_ref = predict(model, x_ref) != yc
            clean_ok = predict(model, xc) == yc
            ok_rl, ok_ref = ok_rl & clean_ok, ok_ref & clean_ok
            n_rl, n_ref = lp(x_rl - xc, "l2"), lp(x_ref - xc, "l2")
            both = ok_rl & ok_ref

            def med(v, m):
                return float(v[m].median()) if bool(m.any()) else float("nan")

            row.extra["cw"] = (
                f"success (of clean-correct) rl {int(ok_rl.sum())}/{int(clean_ok.sum())}, "
                f"ref {int(ok_ref.sum())}/{int(clean_ok.sum())}; median L2 of own successes: "
                f"rl {med(n_rl, ok_rl):.3f}, ref {med(n_ref, ok_ref):.3f}; on the "
                f"{int(both.sum())} both broke: rl {med(n_rl, both):.3f}, "
                f"ref {med(n_ref, both):.3f}; rl smaller on "
                f"{int((n_rl < n_ref - 1e-4)[both].sum())}/{int(both.sum())}")
            print("   " + row.extra["cw"])
            if label == "CW-L2 matched":
                row.known_difference = (
                    "torchattacks' f() takes the max over (1 - onehot) * logits, so the true "
                    "class's masked slot counts as 0 and, when every other logit is negative, "
                    "it only pushes z_y down (docs/attacks.md); robustlab's default (binary "
                    "search) row is the comparison that counts")
            rows.append(row)
    if "autoattack" not in skip:
        aa = create_attack("autoattack", eps=linf, norm="linf", version="standard", seed=0)
        row = compare(
            "AutoAttack", model, xe, ye, linf, "linf", aa,
            lambda: torchattacks_autoattack(model, linf)(xe, ye),
            f"autoattack standard {ce}, seed 0 (apgd-ce 100, apgd-t 100x9, fab-t 100x9, "
            "square 5000)",
            "robustlab.attacks.reference.torchattacks_autoattack (MultiAttack APGD-CE 100, "
            "APGDT 100x9, FAB multi-targeted 100x9, Square 5000; seed 0)")
        row.extra["cw"] = f"robustlab breakdown {aa.last_breakdown}"
        print("   " + row.extra["cw"])
        rows.append(row)
    for norm, eps in (("linf", linf), ("l2", l2)):
        if f"autoattack-original-{norm}" in skip:
            continue
        rows.append(compare_seeded(
            f"AutoAttack (orig) {norm}", model, xe, ye, eps, norm,
            lambda s, norm=norm, eps=eps: (
                create_attack("autoattack", eps=eps, norm=norm, version="standard", seed=s),
                lambda: original_autoattack(model, eps, norm=norm, seed=s)(xe, ye)),
            f"autoattack standard {norm} eps {eps}",
            f"pyautoattack.AutoAttack(norm={norm!r}, eps={eps}, version='standard')", **rk))
    return rows


def print_table(kind: str, clean: float, rows: list[Row], known: list[str]) -> list[str]:
    weaker = []
    print(f"\n== {kind}: clean acc {clean:.4f}")
    hdr = (f"{'attack':<18} {'n':>4} {'robustlab':>9} {'reference':>9} {'diff(pt)':>8}  "
           f"{'verdict':<20} {'rl s':>6} {'ref s':>6}  notes")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        d = (r.rl_acc - r.ref_acc) * 100
        rl_acc, ref_acc = r.seed_means or (r.rl_acc, r.ref_acc)
        verdict = "no weaker" if rl_acc <= ref_acc + TOL + 1e-9 else "WEAKER"
        if r.seed_means is not None:
            verdict += " (seed mean)"
        if verdict.startswith("WEAKER") and r.known_difference:
            verdict = "known diff"
            known.append(f"{kind}: {r.name}: {r.known_difference}")
        elif verdict.startswith("WEAKER"):
            weaker.append(f"{kind}: {r.name}")
        inv = f"; ref invalid {r.ref_invalid}" if r.ref_invalid else ""
        print(f"{r.name:<18} {r.n:>4} {r.rl_acc:>9.4f} {r.ref_acc:>9.4f} {d:>+8.1f}  {verdict:<20} "
              f"{r.rl_s:>6.1f} {r.ref_s:>6.1f}  {r.note}{inv}")
        if "cw" in r.extra:
            print(f"{'':<23} {r.extra['cw']}")
    return weaker


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500, help="test images attacked")
    p.add_argument("--models", nargs="*", default=["at", "bn"], choices=["at", "bn"])
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["fgsm", "pgd", "mifgsm", "apgd-ce", "apgd-t", "fab-t", "square",
                            "pgd-l2", "cw-l2", "autoattack", "autoattack-original-linf",
                            "autoattack-original-l2"])
    p.add_argument("--square-queries", type=int, default=1000,
                   help="queries of the stand-alone Square (AutoAttack's always uses 5000)")
    p.add_argument("--n-expensive", type=int, default=200,
                   help="first images of the --n used for APGD-T, FAB-T, Square, CW-L2, "
                        "AutoAttack (the costly ones)")
    p.add_argument("--train-samples", type=int, default=20_000)
    p.add_argument("--at-epochs", type=int, default=5)
    p.add_argument("--at-warmup-epochs", type=int, default=2)
    p.add_argument("--at-steps", type=int, default=7, help="PGD steps in adversarial training")
    p.add_argument("--at-eps", type=float, default=0.3)
    p.add_argument("--std-epochs", type=int, default=2)
    p.add_argument("--at-eval-eps", type=float, default=0.3)
    p.add_argument("--std-eval-eps", type=float, default=0.1)
    p.add_argument("--at-l2-eps", type=float, default=2.0)
    p.add_argument("--std-l2-eps", type=float, default=1.5)
    p.add_argument("--recheck-seeds", type=int, default=3,
                   help="when a seeded attack comes out weaker, rerun both sides with this "
                        "many more seeds and judge the means (0: judge seed 0 only)")
    p.add_argument("--cache", default=None, help="folder to save / reuse trained weights")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: fastest for these small nets on a shared 2-core box)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchattacks

    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"threads {torch.get_num_threads()}")
    t_start = time.perf_counter()
    splits = load_dataset("mnist")
    x, y = splits.test.x[: args.n], splits.test.y[: args.n]
    weaker: list[str] = []
    tables = []
    for kind in args.models:
        print(f"\n######## model {kind}", flush=True)
        model = get_model(kind, splits, args)
        for p_ in model.parameters():
            p_.requires_grad_(True)
        clean = acc(model, x, y)
        full = acc(model, splits.test.x, splits.test.y)
        print(f"  clean acc on the {len(x)} images {clean:.4f} (full test set {full:.4f})")
        t0 = time.perf_counter()
        rows = run_suite(kind, model, x, y, args)
        print(f"  attacks on {kind}: {time.perf_counter() - t0:.0f} s")
        tables.append((kind, clean, rows))
    print("\n\n================ SUMMARY (acc = robust accuracy; verdict: robustlab no weaker "
          "= acc <= reference + 0.5 pt) ================")
    known: list[str] = []
    for kind, clean, rows in tables:
        weaker += print_table(kind, clean, rows, known)
    print(f"\nWEAKER: {', '.join(weaker) if weaker else 'none'}")
    for line in known:
        print(f"known difference, not counted: {line}")
    print(f"total runtime {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
