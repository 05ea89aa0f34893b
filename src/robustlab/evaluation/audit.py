"""Automated gradient-masking audit (after Athalye et al. 2018 and Carlini et al. 2019).

Each check returns {"name", "status": "pass" | "flag" | "skipped", "reason", "values"}; a
model is flagged when any check flags. Thresholds (documented in docs/evaluation.md):

- large_eps: PGD at the largest meaningful budget (linf 1.0; l2 sqrt(d)) must drive accuracy to
  at most half of chance (0.5 / K);
- curve_monotone: accuracy must not rise with eps along the accuracy-versus-eps curve;
- iterative_vs_single: PGD must not be weaker than FGSM;
- more_steps: PGD with `audit_steps_factor` x the steps and
  `audit_restarts` restarts must not be weaker than PGD;
- black_box: Square (query-based) and a transfer attack must not be stronger than the best
  white-box attack;
- gradients: input gradients of the margin loss must be finite and non-zero (<= 10% of samples
  with an all-zero gradient);
- randomness: outputs that change between two identical forward passes must be declared
  (`randomized = True`) and attacked with EOT;
- bpda: non-differentiable preprocessing (`nondifferentiable = True`) must be attacked with BPDA.

"Weaker / stronger" comparisons are paired (same samples) and allow a tolerance of
max(1 percentage point, 2 samples).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.common.modes import eval_mode
from robustlab.common.sharding import Shard
from robustlab.evaluation.attack_runner import (
    AttackOutcome,
    accepted_kwargs,
    build_attack,
    run_attack,
)

# Thresholds, each named where its check's text is written.
ZERO_GRAD_FRACTION = 0.10  # gradients: at most this share of samples with an all-zero gradient
LARGE_EPS_CHANCE_SHARE = 0.5  # large_eps: accuracy at most this share of chance (1 / K)
COLLAPSE_SHARE = 0.9  # large_eps note: one class predicted for more than this share
PGD_STEPS_FALLBACK = 10  # more_steps: the steps of a curve attack that does not declare them


def check(name: str, ok: bool | None, reason: str, **values: Any) -> dict[str, Any]:
    status = "skipped" if ok is None else ("pass" if ok else "flag")
    return {"name": name, "status": status, "reason": reason, "values": values}


def tolerance(n: int) -> float:
    return max(0.01, 2.0 / max(n, 1))


def large_eps_budget(norm: str, x: Tensor) -> float:
    """The budget at which any image can be turned into any other: linf 1, l2 sqrt(d)."""
    return 1.0 if norm == "linf" else math.sqrt(x[0].numel())


@dataclass
class AuditInputs:
    """What every check reads: the first `n` samples (`x`, `y`, `clean_correct`,
    `clean_pred`), the main evaluation's per-sample robust masks `base` (attack name -> `[n]`
    bool), the accuracy-versus-eps `curve`, and `attack_acc(name, eps, options)`, which runs
    one more attack on those samples and returns its robust mask."""

    model: nn.Module
    x: Tensor
    y: Tensor
    clean_pred: Tensor
    settings: Any
    base: dict[str, Tensor]
    curve: list[dict[str, Any]]
    num_classes: int
    surrogate: nn.Module | None
    pgd_name: str | None
    tol: float
    attack_acc: Callable[[str, float, dict[str, Any] | None], Tensor]


def run_audit(model: nn.Module, x: Tensor, y: Tensor, clean_correct: Tensor, *,
              clean_pred: Tensor, settings: Any, outcomes: dict[str, AttackOutcome],
              curve: list[dict[str, Any]],
              num_classes: int, surrogate: nn.Module | None = None,
              shard: Shard | None = None) -> dict[str, Any]:
    """Run every check of `CHECKS` on the first `settings.audit_n` samples. `outcomes` are the
    main evaluation's per-sample results and `clean_pred` `[N]` its clean predicted classes
    (full length; sliced here). `shard` splits the audit's attack batches across processes, as
    in `run_attack`."""
    from robustlab.registry import ATTACKS

    n = min(settings.audit_n or len(x), len(x))
    xa, ya, cc = x[:n], y[:n], clean_correct[:n]
    kw = dict(norm=settings.norm, seed=settings.seed, adaptive=settings.adaptive)

    def attack_acc(name: str, eps: float, options: dict[str, Any] | None = None) -> Tensor:
        attack = build_attack(name, eps=eps, options=options, **kw)
        return run_attack(attack, model, xa, ya, cc, eps=eps, norm=settings.norm,
                          batch_size=settings.batch_size, shard=shard).robust

    inputs = AuditInputs(
        model=model, x=xa, y=ya, clean_pred=clean_pred[:n], settings=settings,
        base={k: v.robust[:n] for k, v in outcomes.items()}, curve=curve,
        num_classes=num_classes, surrogate=surrogate, tol=tolerance(n), attack_acc=attack_acc,
        pgd_name="pgd" if "pgd" in ATTACKS else (settings.curve_attack or None))
    checks = [run_check(inputs) for run_check in CHECKS]
    flagged = [c["name"] for c in checks if c["status"] == "flag"]
    return {"flagged": bool(flagged), "flags": flagged, "n": n, "tolerance": inputs.tol,
            "checks": checks}


def large_eps_check(a: AuditInputs) -> dict[str, Any]:
    """Accuracy falls to ~0 at a budget that can reach any image."""
    if not a.pgd_name:
        return check("large_eps", None, "no PGD attack registered")
    big = large_eps_budget(a.settings.norm, a.x)
    acc = _acc(a.attack_acc(a.pgd_name, big, a.settings.attack_options.get(a.pgd_name)))
    limit = LARGE_EPS_CHANCE_SHARE / a.num_classes
    share, top = _dominant_class(a.clean_pred)
    collapsed = (f"; the model predicts class {top} for {share:.0%} of clean inputs "
                 "(collapsed: its accuracy is that class's frequency, not robustness)"
                 if share > COLLAPSE_SHARE else "")
    return check("large_eps", acc <= limit,
                 f"{a.pgd_name} at eps={big:.3g} ({a.settings.norm}) leaves accuracy "
                 f"{acc:.3f} (must be <= {limit:.3f}, half of chance){collapsed}",
                 eps=big, acc=acc, limit=limit, dominant_class_share=share)


def curve_monotone_check(a: AuditInputs) -> dict[str, Any]:
    """The accuracy-versus-eps curve does not rise (by more than the tolerance)."""
    pts = [p for p in a.curve if p.get("acc") is not None]
    if len(pts) < 2:
        return check("curve_monotone", None, "no accuracy-versus-eps curve measured")
    rises = [(p, q) for p, q in itertools.pairwise(pts) if q["acc"] > p["acc"] + a.tol]
    return check("curve_monotone", not rises,
                 "accuracy does not rise with eps" if not rises else
                 f"accuracy rises from {rises[0][0]['acc']:.3f} at eps="
                 f"{rises[0][0]['eps']:.3g} to {rises[0][1]['acc']:.3f} at eps="
                 f"{rises[0][1]['eps']:.3g}", points=len(pts))


def iterative_vs_single_check(a: AuditInputs) -> dict[str, Any]:
    """PGD is at least as strong as FGSM (paired, within the tolerance)."""
    if "fgsm" not in a.base or "pgd" not in a.base:
        return check("iterative_vs_single", None, "needs both fgsm and pgd evaluated")
    a_f, a_p = _acc(a.base["fgsm"]), _acc(a.base["pgd"])
    return check("iterative_vs_single", a_p <= a_f + a.tol,
                 f"PGD accuracy {a_p:.3f} vs FGSM {a_f:.3f}"
                 + ("" if a_p <= a_f + a.tol else " (iterative attack weaker)"),
                 pgd=a_p, fgsm=a_f)


def more_steps_check(a: AuditInputs) -> dict[str, Any]:
    """PGD with `audit_steps_factor` x the steps and `audit_restarts` restarts is not weaker
    than the evaluated PGD."""
    from robustlab.registry import ATTACKS

    if not a.pgd_name or a.pgd_name not in a.base:
        return check("more_steps", None, "PGD not among the evaluated attacks")
    factory = ATTACKS.get(a.pgd_name)
    options = dict(a.settings.attack_options.get(a.pgd_name, {}))
    allowed = accepted_kwargs(factory)
    if "steps" in allowed:
        steps = int(options.get("steps", _default(factory, "steps", PGD_STEPS_FALLBACK)))
        options["steps"] = a.settings.audit_steps_factor * steps
    if "restarts" in allowed:
        options["restarts"] = a.settings.audit_restarts
    strong = _acc(a.attack_acc(a.pgd_name, a.settings.eps, options))
    a_b = _acc(a.base[a.pgd_name])
    return check("more_steps", strong <= a_b + a.tol,
                 f"PGD {options} accuracy {strong:.3f} vs PGD {a_b:.3f}",
                 strong=strong, base=a_b, options=options)


def black_box_check(a: AuditInputs) -> dict[str, Any]:
    """Square (query-based) and a transfer attack are not stronger than the best white-box
    (gradient-based) attack's per-sample worst case."""
    from robustlab.registry import ATTACKS

    white = [k for k in a.base if k in ATTACKS and ATTACKS.get(k).gradient_based]
    white_acc = _acc(torch.stack([a.base[k] for k in white]).all(0)) if white else None
    bb: dict[str, float] = {}
    if "square" in ATTACKS:
        bb["square"] = _acc(a.attack_acc("square", a.settings.eps,
                                         {"n_queries": a.settings.audit_square_queries}))
    if "transfer" in ATTACKS and a.surrogate is not None and a.pgd_name:
        bb["transfer"] = _acc(a.attack_acc("transfer", a.settings.eps,
                                           {"surrogate": a.surrogate, "attack": a.pgd_name}))
    if white_acc is None or not bb:
        return check("black_box", None,
                     "needs a white-box attack and square/transfer (with a surrogate)")
    stronger = {k: v for k, v in bb.items() if v < white_acc - a.tol}
    detail = ", ".join(f"{k} {v:.3f}" for k, v in bb.items())
    return check("black_box", not stronger,
                 f"black-box accuracy {detail} vs white-box worst case {white_acc:.3f}"
                 + (" (black-box stronger)" if stronger else ""), white_box=white_acc, **bb)


def gradients_check(a: AuditInputs) -> dict[str, Any]:
    return _gradient_check(a.model, a.x, a.y, a.settings.adaptive)


def randomness_check(a: AuditInputs) -> dict[str, Any]:
    return _randomness_check(a.model, a.x, a.settings.adaptive)


def bpda_check(a: AuditInputs) -> dict[str, Any]:
    return _bpda_check(a.model, a.settings.adaptive)


# In the order they run and are reported.
CHECKS: tuple[Callable[[AuditInputs], dict[str, Any]], ...] = (
    large_eps_check, curve_monotone_check, iterative_vs_single_check, more_steps_check,
    black_box_check, gradients_check, randomness_check, bpda_check,
)


def _dominant_class(pred: Tensor) -> tuple[float, int]:
    """(share of the most predicted class, that class) among clean predictions `pred`."""
    counts = torch.bincount(pred)
    return counts.max().item() / max(len(pred), 1), int(counts.argmax())


def _acc(mask: Tensor) -> float:
    return mask.double().mean().item() if mask.numel() else 0.0


def _default(factory: Any, field: str, fallback: int) -> int:
    import inspect

    try:
        p = inspect.signature(factory).parameters.get(field)
    except (TypeError, ValueError):
        return fallback
    return p.default if p is not None and isinstance(p.default, int) else fallback


def _gradient_check(model: nn.Module, x: Tensor, y: Tensor, adaptive: bool) -> dict[str, Any]:
    from robustlab.attacks import create
    from robustlab.attacks.losses import margin_loss

    # The attacks' own view of the model (BPDA / EOT exactly as an attack would use them).
    probe = create("fgsm", eps=0.0, adaptive=adaptive)
    with eval_mode(model):
        amodel = probe.attack_model(model, x)
        bpda = amodel.bpda
        grad = amodel.gradient(x, y, margin_loss).grad
    flat = grad.reshape(len(x), -1)
    finite = bool(torch.isfinite(flat).all())
    zero = (flat.abs().amax(1) == 0).double().mean().item() if len(x) else 0.0
    ok = finite and zero <= ZERO_GRAD_FRACTION
    how = "with BPDA" if bpda else "plain autograd"
    reason = (f"input gradients ({how}): {'finite' if finite else 'NON-FINITE values'}, "
              f"{zero:.0%} of samples have an all-zero gradient (limit "
              f"{ZERO_GRAD_FRACTION:.0%})")
    return check("gradients", ok, reason, finite=finite, zero_fraction=zero, bpda=bpda)


@torch.no_grad()
def _randomness_check(model: nn.Module, x: Tensor, adaptive: bool) -> dict[str, Any]:
    with eval_mode(model):
        a, b = model(x[:64]), model(x[:64])
    varies = not torch.equal(a, b)
    declared = bool(getattr(model, "randomized", False))
    if varies and not declared:
        return check("randomness", False, "outputs change between identical forward passes but "
                     "the model does not declare randomized=True: attacks did not use EOT",
                     varies=True, declared=False)
    if declared and not adaptive:
        return check("randomness", False, "randomised model evaluated without EOT "
                     "(non-adaptive): numbers overstate robustness", varies=varies, declared=True)
    if declared:
        return check("randomness", True, "randomised model; attacks used EOT",
                     varies=varies, declared=True)
    return check("randomness", True, "deterministic outputs", varies=False, declared=False)


def _bpda_check(model: nn.Module, adaptive: bool) -> dict[str, Any]:
    declared = bool(getattr(model, "nondifferentiable", False))
    if declared and not adaptive:
        return check("bpda", False, "non-differentiable preprocessing evaluated without BPDA "
                     "(non-adaptive): gradients are masked", declared=True)
    if declared:
        return check("bpda", True, "non-differentiable preprocessing attacked with BPDA",
                     declared=True)
    return check("bpda", True, "no non-differentiable preprocessing declared", declared=False)
