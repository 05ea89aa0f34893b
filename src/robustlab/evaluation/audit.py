"""Automated gradient-masking audit (after Athalye et al. 2018 and Carlini et al. 2019).

Each check returns {"name", "status": "pass" | "flag" | "skipped", "reason", "values"}; a
model is flagged when any check flags. Thresholds (documented in docs/evaluation.md):

- finite_logits: the model's logits on the audit's clean inputs must be finite (no NaN / inf),
  and so must every evaluated attack's confidences on its adversarial examples (a NaN or
  +inf logit makes the softmax confidence NaN);
- collapse: on all evaluated clean inputs, accuracy must be above chance (1 / K) and no class
  may be predicted for more than `COLLAPSE_SHARE` (90%) of the inputs unless the labels
  themselves are that concentrated (predicted share <= that class's label share + the
  tolerance): a collapsed or below-chance model's small robustness gap is not robustness;
- large_eps: PGD at the largest meaningful budget (linf 1.0; l2 sqrt(d)) must drive accuracy to
  at most half of chance (0.5 / K);
- curve_monotone: accuracy must not rise with eps along the accuracy-versus-eps curve;
- iterative_vs_single: PGD must not be weaker than FGSM;
- more_steps (two-sided): PGD with `audit_steps_factor` x the steps and `audit_restarts`
  restarts (at least the evaluated PGD's) must neither be weaker than the evaluated PGD (an
  unstable attack) nor lower its accuracy (the evaluated PGD had not converged, Carlini et al.
  2019: its numbers are upper bounds), each beyond the tolerance;
- black_box: Square (query-based) and a transfer attack must not be stronger than the best
  white-box attack of the same threat model (the eps-ball: an attack with a threat model of
  its own, a patch, is never compared with them; `threat_model`);
- gradient_free: a gradient-free attack (linf: SPSA, l2: HopSkipJump) at the same query
  budget per image as Square (`audit_square_queries`; SPSA: 16 directions a step, so
  (queries - 1) // 33 steps, Adam rate max(0.01, 3 eps / steps)) must not be stronger than
  that white-box worst case (other norms: skipped);
- gradients: input gradients of the margin loss must be finite and non-zero (<= 10% of samples
  with an all-zero gradient);
- randomness: outputs that change between two identical forward passes must be declared
  (`randomized = True`) and attacked with EOT;
- bpda: non-differentiable preprocessing (`nondifferentiable = True`) must be attacked with BPDA.

"Weaker / stronger / lower" comparisons are paired (same samples), only between attacks of
one threat model, and allow a tolerance of max(1 percentage point, 2 samples) of the samples
compared.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.common.inference import predict_logits
from robustlab.common.modes import eval_mode
from robustlab.common.sharding import Shard
from robustlab.common.vocabulary import AUDIT_FLAG, AUDIT_PASS, AUDIT_SKIPPED
from robustlab.evaluation.attack_runner import (
    AttackOutcome,
    accepted_kwargs,
    build_attack,
    run_attack,
)

# Thresholds, each named where its check's text is written.
ZERO_GRAD_FRACTION = 0.10  # gradients: at most this share of samples with an all-zero gradient
LARGE_EPS_CHANCE_SHARE = 0.5  # large_eps: accuracy at most this share of chance (1 / K)
COLLAPSE_SHARE = 0.9  # collapse (and the large_eps note): one class predicted for more than
# this share of the clean inputs
PGD_STEPS_FALLBACK = 10  # more_steps: the steps of a curve attack that does not declare them
EPS_BALL = "eps-ball"  # the threat model of every attack that does not declare its own
GRADIENT_FREE_SAMPLES = 16  # gradient_free: SPSA's random directions a step (2 x 16 + 1
# queries a step, within the audit's query budget `audit_square_queries`)
GRADIENT_FREE_ATTACKS = {"linf": "spsa", "l2": "hop-skip-jump"}  # gradient_free: per norm


def check(name: str, ok: bool | None, reason: str, **values: Any) -> dict[str, Any]:
    status = AUDIT_SKIPPED if ok is None else (AUDIT_PASS if ok else AUDIT_FLAG)
    return {"name": name, "status": status, "reason": reason, "values": values}


def tolerance(n: int) -> float:
    return max(0.01, 2.0 / max(n, 1))


def threat_model(name: str) -> str:
    """What an attack's breaks are counted in: `EPS_BALL` (the evaluation's eps / norm), or,
    for an attack that declares a threat model of its own (`within_threat_model`, e.g. a
    patch: one window, see evaluation/attack_runner.py), its own name. Only attacks with the
    same threat model are compared (a patch at eps 1 is no white-box bound for Square)."""
    from robustlab.registry import ATTACKS

    own = name in ATTACKS and hasattr(ATTACKS.get(name), "within_threat_model")
    return name if own else EPS_BALL


def large_eps_budget(norm: str, x: Tensor) -> float:
    """The budget at which any image can be turned into any other: linf 1, l2 sqrt(d)."""
    return 1.0 if norm == "linf" else math.sqrt(x[0].numel())


@dataclass
class AuditInputs:
    """What every check reads: the first `n` samples (`x`, `y`, `clean_correct`,
    `clean_pred`), the main evaluation's per-sample robust masks `base` (attack name -> `[n]`
    bool), the accuracy-versus-eps `curve`, and `attack_acc(name, eps, options)`, which runs
    one more attack on those samples and returns its robust mask. The `all_*` fields cover
    every evaluated sample (free to read, no attack runs on them): `all_y`, `all_clean_pred`,
    `all_clean_correct` `[N]` and each attack's max-softmax confidences `adv_conf` (attack
    name -> `[N]`) on its effective adversarial examples. `refused` (check name -> message) is
    filled as checks run: the checks whose attack refused the model for non-finite logits."""

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
    all_y: Tensor | None = None
    all_clean_pred: Tensor | None = None
    all_clean_correct: Tensor | None = None
    adv_conf: dict[str, Tensor] | None = None
    refused: dict[str, str] = field(default_factory=dict)


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
        pgd_name="pgd" if "pgd" in ATTACKS else (settings.curve_attack or None),
        all_y=y.detach().cpu(), all_clean_pred=clean_pred.detach().cpu(),
        all_clean_correct=clean_correct.detach().cpu(),
        adv_conf={k: v.conf for k, v in outcomes.items()})
    checks = _run_checks(inputs)
    flagged = [c["name"] for c in checks if c["status"] == AUDIT_FLAG]
    return {"flagged": bool(flagged), "flags": flagged, "n": n, "tolerance": inputs.tol,
            "checks": checks}


def _run_checks(inputs: AuditInputs) -> list[dict[str, Any]]:
    """Every check of `CHECKS`, reported in order. A check whose attack refuses the model
    because its logits turned non-finite (`AttackError` "... nan/inf ...", e.g. PGD at the
    large budget leaving the region where the model is finite) is recorded as skipped with the
    attack's message, and `finite_logits` (run last, listed first) flags, naming it; any other
    error is raised as ever."""
    from robustlab.attacks.errors import AttackError

    results: dict[int, dict[str, Any]] = {}
    last = [i for i, c in enumerate(CHECKS) if c is finite_logits_check]
    for i, run_check in enumerate(CHECKS):
        if i in last:
            continue
        name = run_check.__name__.removesuffix("_check")
        try:
            results[i] = run_check(inputs)
        except AttackError as err:
            if "nan/inf" not in str(err):  # check_logits_health's message
                raise
            inputs.refused[name] = str(err)
            results[i] = check(name, None, f"not run: its attack met non-finite logits ({err})")
    for i in last:
        results[i] = CHECKS[i](inputs)
    return [results[i] for i in range(len(CHECKS))]


def finite_logits_check(a: AuditInputs) -> dict[str, Any]:
    """The model's logits on the audit's clean inputs are finite, and so are the evaluated
    attacks' confidences on their adversarial examples (NaN / +inf logits make them NaN)."""
    with eval_mode(a.model):
        logits = predict_logits(a.model, a.x, a.settings.batch_size)
    rows = logits.reshape(len(logits), -1)
    bad_clean = int((~torch.isfinite(rows).all(1)).sum()) if rows.numel() else 0
    kinds = [k for k, present in (("NaN", bool(torch.isnan(rows).any())),
                                  ("+inf", bool(torch.isposinf(rows).any())),
                                  ("-inf", bool(torch.isneginf(rows).any()))) if present]
    bad_adv = {name: int((~torch.isfinite(conf.float())).sum())
               for name, conf in (a.adv_conf or {}).items() if conf.numel()}
    bad_adv = {k: v for k, v in bad_adv.items() if v}
    parts = []
    if bad_clean:
        parts.append(f"{bad_clean} of {len(a.x)} clean inputs give non-finite logits "
                     f"({', '.join(kinds)})")
    if bad_adv:
        parts.append("non-finite confidences (NaN or +inf logits) on the adversarial examples "
                     "of " + ", ".join(f"{k} ({v} samples)" for k, v in bad_adv.items()))
    if a.refused:
        parts.append("the attacks of " + ", ".join(a.refused) + " met non-finite logits "
                     "(those checks did not run)")
    reason = ("; ".join(parts) + ": accuracies and gradients of such outputs mean nothing"
              if parts else f"logits finite on {len(a.x)} clean inputs"
              + (" and the adversarial examples of " + ", ".join(a.adv_conf)
                 if a.adv_conf else ""))
    return check("finite_logits", not parts, reason, nonfinite_clean=bad_clean,
                 n_clean=len(a.x), kinds=kinds, nonfinite_adv=bad_adv,
                 nonfinite_in_checks=list(a.refused))


def collapse_check(a: AuditInputs) -> dict[str, Any]:
    """On every evaluated clean input: accuracy above chance (1 / K), and no class predicted
    for more than `COLLAPSE_SHARE` of the inputs (unless the labels are as concentrated)."""
    pred = a.all_clean_pred if a.all_clean_pred is not None else a.clean_pred
    labels = (a.all_y if a.all_y is not None else a.y).cpu()
    correct = (a.all_clean_correct if a.all_clean_correct is not None
               else (pred == labels.to(pred.device)))
    n = len(pred)
    if n == 0:
        return check("collapse", None, "no clean predictions")
    acc = _acc(correct)
    chance = 1.0 / max(a.num_classes, 1)
    share, top = _dominant_class(pred)
    label_share = _acc(labels == top)
    tol = tolerance(n)
    below = acc <= chance + 1e-12
    dominant = share > COLLAPSE_SHARE and share > label_share + tol
    what = [w for w, on in (("below chance" if acc < chance - 1e-12 else "at chance", below),
                            ("collapsed onto one class", dominant)) if on]
    reason = (f"clean accuracy {acc:.3f} (chance 1/{a.num_classes} = {chance:.3f}); class {top} "
              f"predicted for {share:.1%} of {n} clean inputs (limit {COLLAPSE_SHARE:.0%}; "
              f"{label_share:.1%} of the labels)")
    if what:
        reason = (" and ".join(what) + ": " + reason + "; a small robustness gap of such a model "
                  "is not robustness")
    return check("collapse", not what, reason, clean_acc=acc, chance=chance,
                 dominant_class=top, dominant_class_share=share, label_share=label_share,
                 limit=COLLAPSE_SHARE, n=n)


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
    """Two-sided: PGD with `audit_steps_factor` x the steps and `audit_restarts` restarts is
    neither weaker than the evaluated PGD (an unstable attack) nor stronger (the evaluated PGD
    had not converged: its accuracy is an upper bound), each beyond the tolerance."""
    from robustlab.registry import ATTACKS

    if not a.pgd_name or a.pgd_name not in a.base:
        return check("more_steps", None, "PGD not among the evaluated attacks")
    factory = ATTACKS.get(a.pgd_name)
    base_options = dict(a.settings.attack_options.get(a.pgd_name, {}))
    options = dict(base_options)
    allowed = accepted_kwargs(factory)
    base_shown: dict[str, Any] = {}  # the evaluated PGD's steps / restarts, for the reason
    if "steps" in allowed:
        steps = int(options.get("steps", _default(factory, "steps", PGD_STEPS_FALLBACK)))
        base_shown["steps"] = steps
        options["steps"] = a.settings.audit_steps_factor * steps
    if "restarts" in allowed:
        base_shown["restarts"] = int(options.get("restarts", _default(factory, "restarts", 1)))
        # never fewer restarts than the evaluated PGD's own
        options["restarts"] = max(a.settings.audit_restarts, base_shown["restarts"])
    strong = _acc(a.attack_acc(a.pgd_name, a.settings.eps, options))
    a_b = _acc(a.base[a.pgd_name])
    strong_name, base_name = _pgd_label(a.pgd_name, options), _pgd_label(a.pgd_name, base_shown)
    values = dict(strong=strong, base=a_b, options=options, tolerance=a.tol)
    compared = (f"{strong_name} accuracy {strong:.3f} vs the evaluated {base_name} {a_b:.3f} "
                f"(tolerance {a.tol:.3f})")
    slack = a.tol + 1e-9  # accuracies are sample counts / n: a difference of exactly tol passes
    if strong < a_b - slack:
        return check("more_steps", False,
                     "attack not converged — numbers are upper bounds: " + compared
                     + f"; the stronger PGD lowers accuracy by {a_b - strong:.3f}",
                     direction="not_converged", **values)
    if strong > a_b + slack:
        return check("more_steps", False,
                     "stronger attack weaker: " + compared + f"; the stronger PGD leaves "
                     f"{strong - a_b:.3f} more accuracy (unstable attack: randomness or "
                     "masked gradients)", direction="weaker", **values)
    return check("more_steps", True, compared + ": within the tolerance both ways",
                 direction=None, **values)


def black_box_check(a: AuditInputs) -> dict[str, Any]:
    """Square (query-based) and a transfer attack (both in the eps-ball) are not stronger
    than the per-sample worst case of the evaluated white-box (gradient-based) attacks of the
    same threat model; patch attacks (their own threat model) are left out of it."""
    from robustlab.registry import ATTACKS

    white, white_acc = _white_box(a)
    if not white:
        return check("black_box", None, "needs a white-box attack of the eps-ball threat "
                     "model among the evaluated ones (patches have their own)")
    bb: dict[str, float] = {}
    if "square" in ATTACKS:
        bb["square"] = _acc(a.attack_acc("square", a.settings.eps,
                                         {"n_queries": a.settings.audit_square_queries}))
    if "transfer" in ATTACKS and a.surrogate is not None and a.pgd_name:
        bb["transfer"] = _acc(a.attack_acc("transfer", a.settings.eps,
                                           {"surrogate": a.surrogate, "attack": a.pgd_name}))
    if not bb:
        return check("black_box", None, "needs square or transfer (with a surrogate)")
    stronger = {k: v for k, v in bb.items() if v < white_acc - a.tol}
    detail = ", ".join(f"{k} {v:.3f}" for k, v in bb.items())
    return check("black_box", not stronger,
                 f"black-box accuracy {detail} vs white-box worst case {white_acc:.3f}"
                 f" ({', '.join(white)})" + (" (black-box stronger)" if stronger else ""),
                 white_box=white_acc, white_box_attacks=white, **bb)


def gradient_free_check(a: AuditInputs) -> dict[str, Any]:
    """A gradient-free attack (`GRADIENT_FREE_ATTACKS`: SPSA for linf, HopSkipJump for l2) at
    Square's query budget per image is not stronger than the per-sample worst case of the
    evaluated white-box attacks of the eps-ball (beyond the tolerance): if it is, the
    gradients the white-box attacks followed lie (Uesato et al. 2018)."""
    from robustlab.registry import ATTACKS

    white, white_acc = _white_box(a)
    if not white:
        return check("gradient_free", None, "needs a white-box attack of the eps-ball threat "
                     "model among the evaluated ones (patches have their own)")
    name = GRADIENT_FREE_ATTACKS.get(a.settings.norm)
    if name is None or name not in ATTACKS:
        return check("gradient_free", None, f"no gradient-free attack for norm "
                     f"{a.settings.norm} (linf: spsa, l2: hop-skip-jump)")
    options = gradient_free_options(name, a.settings.audit_square_queries, a.settings.eps)
    acc = _acc(a.attack_acc(name, a.settings.eps, options))
    stronger = acc < white_acc - a.tol
    return check("gradient_free", not stronger,
                 f"{name} ({_queries_text(name, options)} queries per image) accuracy "
                 f"{acc:.3f} vs white-box worst case {white_acc:.3f} ({', '.join(white)})"
                 + (" (gradient-free attack stronger: masked gradients)" if stronger else ""),
                 attack=name, acc=acc, white_box=white_acc, white_box_attacks=white,
                 options=options, tolerance=a.tol)


def gradient_free_options(name: str, queries: int, eps: float) -> dict[str, Any]:
    """The options that keep the gradient-free attack `name` within `queries` per image; SPSA's
    Adam rate is the paper's 0.01, raised to `3 eps / steps` where that is larger (so the
    ball's edge is within reach in a third of the few steps the budget allows)."""
    if name == "spsa":
        steps = max(1, (queries - 1) // (2 * GRADIENT_FREE_SAMPLES + 1))
        return {"samples": GRADIENT_FREE_SAMPLES, "steps": steps,
                "lr": max(0.01, 3 * float(eps) / steps)}
    return {"max_queries": queries}


def _queries_text(name: str, options: dict[str, Any]) -> str:
    if name == "spsa":
        return f"<= {1 + options['steps'] * (2 * options['samples'] + 1)}"
    return f"<= {options['max_queries']}"


def _white_box(a: AuditInputs) -> tuple[list[str], float]:
    """(the evaluated gradient-based attacks of the eps-ball, their per-sample worst-case
    accuracy); ([], nan) without one."""
    from robustlab.registry import ATTACKS

    white = [k for k in a.base if k in ATTACKS and ATTACKS.get(k).gradient_based
             and threat_model(k) == EPS_BALL]
    if not white:
        return [], math.nan
    return white, _acc(torch.stack([a.base[k] for k in white]).all(0))


def gradients_check(a: AuditInputs) -> dict[str, Any]:
    return _gradient_check(a.model, a.x, a.y, a.settings.adaptive)


def randomness_check(a: AuditInputs) -> dict[str, Any]:
    return _randomness_check(a.model, a.x, a.settings.adaptive)


def bpda_check(a: AuditInputs) -> dict[str, Any]:
    return _bpda_check(a.model, a.settings.adaptive)


# In the order they are reported and run (finite_logits runs last; see `_run_checks`).
CHECKS: tuple[Callable[[AuditInputs], dict[str, Any]], ...] = (
    finite_logits_check, collapse_check, large_eps_check, curve_monotone_check,
    iterative_vs_single_check, more_steps_check, black_box_check, gradient_free_check,
    gradients_check, randomness_check, bpda_check,
)


def _dominant_class(pred: Tensor) -> tuple[float, int]:
    """(share of the most predicted class, that class) among clean predictions `pred`."""
    if not pred.numel():
        return 0.0, 0
    counts = torch.bincount(pred.cpu().long().clamp(min=0))
    return counts.max().item() / len(pred), int(counts.argmax())


def _pgd_label(name: str, options: dict[str, Any]) -> str:
    """'pgd-50 x 3 restarts' from an attack's steps / restarts options."""
    steps, restarts = options.get("steps"), options.get("restarts")
    label = name + (f"-{steps}" if steps else "")
    return label + (f" x {restarts} restarts" if restarts and restarts > 1 else "")


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
    # NaN != NaN: equal NaNs (a finite_logits matter) are not randomness
    varies = a.shape != b.shape or not bool(torch.isclose(a, b, rtol=0.0, atol=0.0,
                                                          equal_nan=True).all())
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
