"""Build attacks by name and run them in batches, returning per-sample outcomes.

An attack "breaks" a sample only when the sample is correctly classified on its clean input
AND the adversarial example the attack returns is misclassified AND lies inside the threat
model's ball (`norm`, `eps`). Unbounded minimal-norm attacks (CW-L2) therefore count under the
same threat model as every other attack; their unbounded distortion is reported separately.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.min_norm import fooled_distances
from robustlab.attacks.progress import reporting
from robustlab.common.inference import predict_logits
from robustlab.common.sharding import Shard
from robustlab.evaluation import metrics as M


@dataclass
class AttackOutcome:
    """Per-sample results of one attack on `N` samples (all CPU tensors).

    robust `[N]` bool (clean-correct and not broken in budget), correct_adv `[N]` bool (the
    prediction on the effective adversarial input is right), conf `[N]` (max softmax on it),
    l2 / linf `[N]` (norms of the effective perturbation), raw_l2 `[N]` (norm of the raw
    output's perturbation, in or out of budget), raw_fooled `[N]` bool (raw output
    misclassified), seconds (wall time); distances `[N]` float64 (minimum-norm attacks only,
    `attacks/min_norm.py`: the raw output's distance in the attack's norm where it fools the
    model, inf where it does not).
    """

    robust: Tensor
    correct_adv: Tensor
    conf: Tensor
    l2: Tensor
    linf: Tensor
    raw_l2: Tensor
    raw_fooled: Tensor
    seconds: float
    x_adv: Tensor | None = None
    distances: Tensor | None = None
    distance_norm: str | None = None
    l0: Tensor | None = None  # pixels changed `[N]` (the effective perturbation; l0 runs only)
    queries: Tensor | None = None


def accepted_kwargs(factory: Any) -> set[str]:
    """Keyword names `factory` declares explicitly (its **kwargs, if any, are not listed)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD}


def build_attack(name: str, *, eps: float, norm: str, seed: int, adaptive: bool,
                 options: dict[str, Any] | None = None) -> Any:
    """`robustlab.attacks.create(name, ...)`, passing eps only to attacks that take one."""
    import robustlab.attacks as attacks
    from robustlab.registry import ATTACKS

    factory = ATTACKS.get(name)
    kwargs: dict[str, Any] = {"seed": seed, "adaptive": adaptive}
    # unbounded attacks keep their own norm (cw-l2) unless they take this one (fmn)
    if getattr(factory, "bounded", True) or _takes_norm(factory, norm):
        kwargs["norm"] = norm
    if getattr(factory, "needs_eps", True):
        kwargs["eps"] = eps
    kwargs.update(options or {})
    return attacks.create(name, **kwargs)


def _takes_norm(factory: Any, norm: str) -> bool:
    """Whether the attack's `norm` option accepts `norm`."""
    options = getattr(factory, "options", None)
    option = options().get("norm") if callable(options) else None
    return option is not None and norm in (option.choices or ())


def build_attacks(settings: Any) -> dict[str, Any]:
    """Every attack of `settings` (an `EvalSettings`), built up front so that a bad
    hyper-parameter fails before any compute."""
    return {name: build_attack(name, eps=settings.eps, norm=settings.norm, seed=settings.seed,
                               adaptive=settings.adaptive,
                               options=settings.attack_options.get(name))
            for name in settings.attacks}


def run_attack(attack: Any, model: nn.Module, x: Tensor, y: Tensor, clean_correct: Tensor, *,
               eps: float, norm: str, batch_size: int, shard: Shard | None = None,
               progress: Callable[[int], None] | None = None,
               keep_adv: bool = False, partial: Any = None) -> AttackOutcome:
    """Run `attack` on `x` `[N, C, H, W]` / `y` `[N]` in batches; see `AttackOutcome`.

    `clean_correct` `[N]` bool (CPU) are the clean predictions' correctness. With `shard`, this
    process attacks only its batches and gathers the others' (`robustlab.common.sharding`);
    every process returns the full outcome. `progress(k)` (optional) is told each finished
    batch's size; when it has an `attack_step` callback (`evaluation.progress.Stage`), the
    attack reports its step groups there while it runs (`attacks.progress`). `partial`
    (an `evaluation.partial.AttackBatches`, not with `keep_adv`): batches it holds are taken
    from it, each new one is added to it as it finishes (a killed evaluation resumes).
    """
    t0 = time.perf_counter()
    shard = shard or Shard()
    on_step = getattr(progress, "attack_step", None)
    done = []
    for j, i in enumerate(range(0, len(x), batch_size)):
        if not shard.owns(j):
            continue
        kept = partial.get(j) if partial is not None else None
        if kept is None:
            with reporting(attack, on_step) if on_step is not None else nullcontext():
                kept = _attack_batch(attack, model, x[i:i + batch_size], y[i:i + batch_size],
                                     eps=eps, norm=norm, batch_size=batch_size,
                                     keep_adv=keep_adv)
            if partial is not None:
                partial.put(j, kept)
        done.append((i, kept))
        if progress is not None:
            progress(len(x[i:i + batch_size]))
    batches = [b for _, b in sorted(shard.gather(done), key=lambda item: item[0])]
    keys = ("correct", "conf", "l2", "linf", "raw_l2", "raw_fooled") + (("x_adv",) if keep_adv
                                                                        else ())
    if batches and "distances" in batches[0]:
        keys += ("distances",)
    if batches and all("l0" in b for b in batches):  # an l0 evaluation: pixels changed
        keys += ("l0",)
    if batches and all("queries" in b for b in batches):  # a query-counting attack
        keys += ("queries",)
    cat = {k: torch.cat([b[k] for b in batches]) if batches else torch.empty(0) for k in keys}
    correct = cat["correct"].bool()
    return AttackOutcome(robust=clean_correct & correct, correct_adv=correct, conf=cat["conf"],
                         l2=cat["l2"], linf=cat["linf"], raw_l2=cat["raw_l2"],
                         raw_fooled=cat["raw_fooled"].bool(),
                         seconds=time.perf_counter() - t0, x_adv=cat.get("x_adv"),
                         distances=cat.get("distances"),
                         distance_norm=attack.norm if "distances" in cat else None,
                         l0=cat.get("l0"), queries=cat.get("queries"))


def _attack_batch(attack: Any, model: nn.Module, xb: Tensor, yb: Tensor, *, eps: float,
                  norm: str, batch_size: int, keep_adv: bool = False) -> dict[str, Tensor]:
    """Per-sample results (CPU tensors `[B]`) of one batch; see `AttackOutcome`."""
    counts_queries = hasattr(attack, "last_queries")
    if counts_queries:
        attack.last_queries = None  # never a previous batch's counts
    x_adv = attack(model, xb, yb).detach()
    queries = getattr(attack, "last_queries", None) if counts_queries else None
    raw_logits = predict_logits(model, x_adv, batch_size)
    delta = x_adv - xb
    # An attack with a threat model of its own (a patch) says what counts; else the eps-ball.
    own = getattr(attack, "within_threat_model", None)
    within = (own(xb, x_adv).to(delta.device) if own is not None
              else M.within_budget(delta, eps, norm))
    x_eff = torch.where(within.view(-1, *[1] * (xb.dim() - 1)).to(xb.device), x_adv, xb)
    logits = raw_logits if bool(within.all()) else predict_logits(model, x_eff, batch_size)
    norms = M.lp_norms(x_eff - xb)
    kept = {"x_adv": x_eff.detach().float().cpu()} if keep_adv else {}
    if norm == "l0":
        kept["l0"] = norms["l0"].cpu()
    if getattr(attack, "returns_distances", False):  # a minimum-norm attack (fmn, ddn)
        fooled = raw_logits.argmax(1) != yb
        kept["distances"] = fooled_distances(xb, x_adv, fooled, attack.norm).cpu()
    if queries is not None and len(queries) == len(xb):
        kept["queries"] = queries.detach().long().cpu()
    return {**kept, "correct": (logits.argmax(1) == yb).cpu(),
            "conf": M.confidence(logits).cpu(),
            "l2": norms["l2"].cpu(), "linf": norms["linf"].cpu(),
            "raw_l2": M.lp_norms(delta)["l2"].cpu(),
            "raw_fooled": (raw_logits.argmax(1) != yb).cpu()}


def summarize_outcome(out: AttackOutcome, clean_correct: Tensor, ece_bins: int) -> dict[str, Any]:
    """JSON-ready summary of one attack (see docs/evaluation.md, `attacks.<name>`)."""
    broken = clean_correct & ~out.robust
    fooled_raw = clean_correct & out.raw_fooled
    acc = M.accuracy(out.robust)
    return {
        "acc": acc,
        "success_rate": M.accuracy(broken[clean_correct]),
        "mixed_acc": M.mixed_accuracy(clean_correct, out.robust),
        "confidence": M.confidence_summary(out.conf, out.correct_adv),
        "ece": M.expected_calibration_error(out.conf, out.correct_adv, ece_bins),
        "perturbation": {
            "l2_mean": M.mean_or_none(out.l2[broken]),
            "l2_median": M.median_or_none(out.l2[broken]),
            "linf_mean": M.mean_or_none(out.linf[broken]),
            "linf_median": M.median_or_none(out.linf[broken]),
            "unbounded_l2_median": M.median_or_none(out.raw_l2[fooled_raw]),
            **({} if out.l0 is None else {"l0_mean": M.mean_or_none(out.l0[broken]),
                                          "l0_median": M.median_or_none(out.l0[broken])}),
        },
        **({} if out.queries is None else {"queries": _query_summary(out.queries,
                                                                       clean_correct, broken)}),
        "seconds": out.seconds,
    }


def _query_summary(queries: Tensor, clean_correct: Tensor, broken: Tensor) -> dict[str, Any]:
    """Queries per image (as the attack counts them in `last_queries`) of a query-counting
    attack: mean and median over the clean-correct images (each attacked, broken or not) and
    median over the broken ones (queries to success, as Square's and Sparse-RS's papers
    report them); None where the set is empty."""
    q = queries.double()
    return {"mean": M.mean_or_none(q[clean_correct]), "median": M.median_or_none(q[clean_correct]),
            "median_broken": M.median_or_none(q[broken])}
