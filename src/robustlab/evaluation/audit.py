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
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.common.sharding import Shard
from robustlab.evaluation.attack_runner import (
    AttackOutcome,
    accepted_kwargs,
    build_attack,
    run_attack,
)

ZERO_GRAD_FRACTION = 0.10
_QUERY_FIELDS = ("n_queries", "queries", "max_queries")
_STEP_FIELDS = ("steps", "n_iter", "iterations")


def check(name: str, ok: bool | None, reason: str, **values: Any) -> dict[str, Any]:
    status = "skipped" if ok is None else ("pass" if ok else "flag")
    return {"name": name, "status": status, "reason": reason, "values": values}


def tolerance(n: int) -> float:
    return max(0.01, 2.0 / max(n, 1))


def large_eps_budget(norm: str, x: Tensor) -> float:
    """The budget at which any image can be turned into any other: linf 1, l2 sqrt(d)."""
    return 1.0 if norm == "linf" else math.sqrt(x[0].numel())


def run_audit(model: nn.Module, x: Tensor, y: Tensor, clean_correct: Tensor, *,
              clean_pred: Tensor, settings: Any, outcomes: dict[str, AttackOutcome],
              curve: list[dict[str, Any]],
              num_classes: int, surrogate: nn.Module | None = None,
              shard: Shard | None = None) -> dict[str, Any]:
    """Run every check on the first `settings.audit_n` samples. `outcomes` are the main
    evaluation's per-sample results and `clean_pred` `[N]` its clean predicted classes (full
    length; sliced here). `shard` splits the audit's attack batches across processes, as in
    `run_attack`."""
    from robustlab.registry import ATTACKS

    n = min(settings.audit_n or len(x), len(x))
    xa, ya, cc = x[:n], y[:n], clean_correct[:n]
    tol = tolerance(n)
    base = {k: v.robust[:n] for k, v in outcomes.items()}
    pgd_name = "pgd" if "pgd" in ATTACKS else (settings.curve_attack or None)
    kw = dict(norm=settings.norm, seed=settings.seed, adaptive=settings.adaptive)

    def attack_acc(name: str, eps: float, options: dict[str, Any] | None = None) -> Tensor:
        attack = build_attack(name, eps=eps, options=options, **kw)
        out = run_attack(attack, model, xa, ya, cc, eps=eps, norm=settings.norm,
                         batch_size=settings.batch_size, shard=shard)
        return out.robust

    checks: list[dict[str, Any]] = []
    # 1. accuracy falls to ~0 at a huge budget
    if pgd_name:
        big = large_eps_budget(settings.norm, xa)
        acc = _acc(attack_acc(pgd_name, big, settings.attack_options.get(pgd_name)))
        limit = 0.5 / num_classes
        share, top = _dominant_class(clean_pred[:n])
        collapsed = (f"; the model predicts class {top} for {share:.0%} of clean inputs "
                     "(collapsed: its accuracy is that class's frequency, not robustness)"
                     if share > 0.9 else "")
        checks.append(check("large_eps", acc <= limit,
                            f"{pgd_name} at eps={big:.3g} ({settings.norm}) leaves accuracy "
                            f"{acc:.3f} (must be <= {limit:.3f}, half of chance){collapsed}",
                            eps=big, acc=acc, limit=limit, dominant_class_share=share))
    else:
        checks.append(check("large_eps", None, "no PGD attack registered"))
    # 2. the accuracy-versus-eps curve does not rise
    pts = [p for p in curve if p.get("acc") is not None]
    rises = [(a, b) for a, b in itertools.pairwise(pts) if b["acc"] > a["acc"] + tol]
    if len(pts) >= 2:
        checks.append(check("curve_monotone", not rises,
                            "accuracy does not rise with eps" if not rises else
                            f"accuracy rises from {rises[0][0]['acc']:.3f} at eps="
                            f"{rises[0][0]['eps']:.3g} to {rises[0][1]['acc']:.3f} at eps="
                            f"{rises[0][1]['eps']:.3g}", points=len(pts)))
    else:
        checks.append(check("curve_monotone", None, "no accuracy-versus-eps curve measured"))
    # 3. iterative at least as strong as single-step
    if "fgsm" in base and "pgd" in base:
        a_f, a_p = _acc(base["fgsm"]), _acc(base["pgd"])
        checks.append(check("iterative_vs_single", a_p <= a_f + tol,
                            f"PGD accuracy {a_p:.3f} vs FGSM {a_f:.3f}"
                            + ("" if a_p <= a_f + tol else " (iterative attack weaker)"),
                            pgd=a_p, fgsm=a_f))
    else:
        checks.append(check("iterative_vs_single", None, "needs both fgsm and pgd evaluated"))
    # 4. more steps and restarts do not raise accuracy
    if pgd_name and pgd_name in base:
        options = dict(settings.attack_options.get(pgd_name, {}))
        allowed = accepted_kwargs(ATTACKS.get(pgd_name))
        step_field = next((f for f in _STEP_FIELDS if f in allowed), None)
        if step_field:
            default = _default(ATTACKS.get(pgd_name), step_field, 10)
            steps = int(options.get(step_field, default))
            options[step_field] = settings.audit_steps_factor * steps
        if "restarts" in allowed:
            options["restarts"] = settings.audit_restarts
        strong = _acc(attack_acc(pgd_name, settings.eps, options))
        a_b = _acc(base[pgd_name])
        checks.append(check("more_steps", strong <= a_b + tol,
                            f"PGD {options} accuracy {strong:.3f} vs PGD {a_b:.3f}",
                            strong=strong, base=a_b, options=options))
    else:
        checks.append(check("more_steps", None, "PGD not among the evaluated attacks"))
    # 5. black-box attacks are not stronger than white-box ones
    white = [k for k, v in base.items() if _is_white_box(k)]
    white_acc = _acc(torch.stack([base[k] for k in white]).all(0)) if white else None
    bb: dict[str, float] = {}
    if "square" in ATTACKS:
        allowed = accepted_kwargs(ATTACKS.get("square"))
        qf = next((f for f in _QUERY_FIELDS if f in allowed), None)
        bb["square"] = _acc(attack_acc("square", settings.eps,
                                       {qf: settings.audit_square_queries} if qf else None))
    if "transfer" in ATTACKS and surrogate is not None and pgd_name:
        bb["transfer"] = _acc(attack_acc("transfer", settings.eps,
                                         {"surrogate": surrogate, "attack": pgd_name}))
    if white_acc is None or not bb:
        checks.append(check("black_box", None,
                            "needs a white-box attack and square/transfer (with a surrogate)"))
    else:
        stronger = {k: v for k, v in bb.items() if v < white_acc - tol}
        detail = ", ".join(f"{k} {v:.3f}" for k, v in bb.items())
        checks.append(check("black_box", not stronger,
                            f"black-box accuracy {detail} vs white-box worst case "
                            f"{white_acc:.3f}" + (" (black-box stronger)" if stronger else ""),
                            white_box=white_acc, **bb))
    # 6. gradients finite and non-zero
    checks.append(_gradient_check(model, xa, ya, settings.adaptive))
    # 7. randomness and 8. non-differentiable preprocessing
    checks.append(_randomness_check(model, xa, settings.adaptive))
    checks.append(_bpda_check(model, settings.adaptive))
    flagged = [c["name"] for c in checks if c["status"] == "flag"]
    return {"flagged": bool(flagged), "flags": flagged, "n": n, "tolerance": tol,
            "checks": checks}


def _dominant_class(pred: Tensor) -> tuple[float, int]:
    """(share of the most predicted class, that class) among clean predictions `pred`."""
    counts = torch.bincount(pred)
    return counts.max().item() / max(len(pred), 1), int(counts.argmax())


def _acc(mask: Tensor) -> float:
    return mask.double().mean().item() if mask.numel() else 0.0


def _is_white_box(name: str) -> bool:
    return name not in ("square", "transfer")


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
    was = model.training
    model.eval()
    try:
        amodel = probe.attack_model(model, x)
        bpda = amodel.bpda
        grad = amodel.gradient(x, y, margin_loss).grad
    finally:
        model.train(was)
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
    was = model.training
    model.eval()
    try:
        a, b = model(x[:64]), model(x[:64])
    finally:
        model.train(was)
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
