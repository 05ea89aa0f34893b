"""AutoAttack, version "standard" (Croce & Hein, 2020).

APGD-CE (no restarts) -> APGD-T (9 target classes) -> FAB-T (9 target classes) -> Square
(5000 queries), each with 100 iterations where iterative, each run only on the samples that
are still robust (correctly classified) after the previous ones; the output holds, per
sample, the first adversarial example found (the clean input where it is misclassified
already; the last attack's output where every attack failed). At norm l1 (the original's
standard L1 version): APGD-CE with 5 restarts and APGD-T with 5 targets, both with the
large-eps stages, then FAB-T (9 targets) and Square (5000 queries) at L1.

FAB-T and Square are looked up in the attack registry (`fab-t`, `square`); if either is not
registered, constructing AutoAttack fails with a clear error -- it never silently skips one.
`attack.last_robust` `[N]` (bool) and `attack.last_breakdown` (name -> number of samples each
stage broke) describe the last call. Under `attacks.progress.reporting(attack, callback)` each
component is a stage of its own: a start report, its inner step groups (APGD-T per target,
FAB-T and Square per step group) and a final report with the robust count after it, as the
original AutoAttack logs "robust accuracy after APGD-CE".
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from robustlab.attacks.base import Attack, AttackError
from robustlab.attacks.norms import eps_view, project_and_clip
from robustlab.attacks.progress import AttackStep, StepCallback, callback_of, reporting
from robustlab.common.options import Option
from robustlab.common.vocabulary import ATTACK_NORMS
from robustlab.registry import ATTACKS

VERSIONS = ("standard",)


# The standard version's counts (Croce & Hein, 2020); `AutoAttack` takes smaller ones for CPU
# budgets, and records them in `describe()`.
STANDARD_STEPS = 100
STANDARD_TARGET_CLASSES = 9
STANDARD_QUERIES = 5000
# At l1 (Croce & Hein 2021; the original's `_set_version("standard")` with norm="L1"): APGD-CE
# with 5 restarts and APGD-T with 5 target classes, both with the large-eps stages, then FAB-T
# (9 target classes, one restart) and Square (5000 queries) at L1 as at linf / l2: the
# original's whole standard composition (`fab.py` `l1_boundary_step`, `square.py` L1 queries).
L1_APGD_RESTARTS = 5
L1_TARGET_CLASSES = 5


def standard_components(
    eps: float | Tensor, norm: str, seed: int, common: dict[str, Any], *,
    steps: int = STANDARD_STEPS, n_target_classes: int = STANDARD_TARGET_CLASSES,
    n_queries: int = STANDARD_QUERIES,
) -> list[tuple[str, Attack]]:
    """The four attacks of the standard version: APGD-CE, APGD-T, FAB-T (`steps` iterations,
    one restart; `n_target_classes` targets) and Square (`n_queries`)."""
    kw = dict(eps=eps, norm=norm, seed=seed, **common)
    missing = [n for n in ("fab-t", "square") if n not in ATTACKS]
    if missing:
        raise AttackError(
            f"autoattack (standard) needs the attacks {', '.join(missing)}, which are not "
            f"registered; registered: {', '.join(ATTACKS.list())}"
        )
    targets = dict(n_target_classes=n_target_classes)
    if norm == "l1":
        apgd = _l1_apgd_components(kw, steps, n_target_classes)
    else:
        apgd = [
            ("apgd-ce", ATTACKS.create("apgd-ce", steps=steps, restarts=1, **kw)),
            ("apgd-t", ATTACKS.create("apgd-t", steps=steps, restarts=1, **targets, **kw)),
        ]
    return apgd + [
        ("fab-t", ATTACKS.create("fab-t", steps=steps, restarts=1, **targets, **kw)),
        ("square", ATTACKS.create("square", n_queries=n_queries, **kw)),
    ]


def _l1_apgd_components(kw: dict[str, Any], steps: int,
                        n_target_classes: int) -> list[tuple[str, Attack]]:
    """The standard L1 version's APGD-CE (5 restarts) and APGD-T (5 targets, one restart),
    both with the large-eps stages; `n_target_classes` below 9 scales the targets down
    (5 * n // 9, at least 1) as the quick / CPU budgets do."""
    targets = max(1, n_target_classes * L1_TARGET_CLASSES // STANDARD_TARGET_CLASSES)
    return [
        ("apgd-ce", ATTACKS.create("apgd-ce", steps=steps, restarts=L1_APGD_RESTARTS,
                                   large_eps=True, **kw)),
        ("apgd-t", ATTACKS.create("apgd-t", steps=steps, restarts=1, n_target_classes=targets,
                                  large_eps=True, **kw)),
    ]


@ATTACKS.register("autoattack")
class AutoAttack(Attack):
    """AutoAttack, standard version. The common options (norm, seed, adaptive, ...) are passed
    on to every component. From Python, `components` may replace the standard list with
    `[(name, Attack), ...]` (the counts then play no role)."""

    quick_options = {"steps": 5, "n_target_classes": 2, "n_queries": 20}

    min_classes = 3
    supports_target = False
    OPTIONS = {
        "norm": Option("linf", "choice", "threat-model norm (case-insensitive; l1: the "
                       "original's L1 counts, see docs/attacks.md)",
                       choices=(*ATTACK_NORMS, "l1")),
        "version": Option("standard", "choice", "the component list", choices=VERSIONS),
        "steps": Option(STANDARD_STEPS, "int", "APGD and FAB iterations", low=1),
        "n_target_classes": Option(STANDARD_TARGET_CLASSES, "int", "target classes of APGD-T "
                                   "and FAB-T", low=1),
        "n_queries": Option(STANDARD_QUERIES, "int", "Square's queries", low=1),
    }
    #: the counts are the components' (their `describe()` records them), not AutoAttack's own
    COUNTS = ("steps", "n_target_classes", "n_queries")

    def __init__(self, *, components: list[tuple[str, Attack]] | None = None,
                 **options: Any) -> None:
        super().__init__(**options)
        if components is None:
            shared = {k: getattr(self, k) for k in ("adaptive", "eot_iter", "memory_format",
                                                    "cpu_kernels") if k in options}
            components = standard_components(
                options.get("eps"), self.norm, self.seed, shared,
                **{k: getattr(self, k) for k in self.COUNTS})
        for name, att in components:
            if not isinstance(att, Attack):
                raise AttackError(f"components: {name!r} is not an Attack: {att!r}")
            if att.norm != self.norm:
                raise AttackError(f"components: {name!r} uses norm {att.norm}, not {self.norm}")
        self.components = components
        self.last_robust: Tensor | None = None
        self.last_breakdown: dict[str, int] = {}

    @classmethod
    def parameters(cls) -> list[inspect.Parameter]:
        return super().parameters() + [inspect.Parameter(
            "components", inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation="list[tuple[str, Attack]] | None")]

    def describe(self) -> dict[str, Any]:
        out = {k: v for k, v in super().describe().items() if k not in self.COUNTS}
        out["components"] = [att.describe() for _, att in self.components]
        return out

    def perturb(self, model, x, y, eps, target, generator):
        x_adv = x.clone()
        robust = ~model.is_adversarial(x, y)
        self.last_breakdown = {"clean": int((~robust).sum())}
        callback = callback_of(self)
        for name, att in self.components:
            idx = robust.nonzero().flatten()
            _report(callback, name, robust, final=False)
            if idx.numel() == 0:
                self.last_breakdown[name] = 0
                _report(callback, name, robust, final=True)
                continue
            if att.min_classes > model.logits(x[:1]).shape[1]:
                raise AttackError(f"{name} needs at least {att.min_classes} classes")
            gen = torch.Generator(device=x.device).manual_seed(att.seed)
            # the component's robust counts are over x[idx], the batch's only robust samples
            with reporting(att, _renamed(callback, name, len(x))):
                out = att.perturb(model, x[idx], y[idx], eps[idx], None, gen)
            xi = x[idx]
            out = project_and_clip(
                xi, model.prepare(out.detach()), eps_view(eps[idx], xi), self.norm
            )
            broken = model.is_adversarial(out, y[idx])
            x_adv[idx] = out  # still-robust samples keep the latest attack's output
            robust[idx[broken]] = False
            self.last_breakdown[name] = int(broken.sum())
            _report(callback, name, robust, final=True)
        self.last_robust = robust
        return x_adv


def _report(callback: StepCallback | None, name: str, robust: Tensor, *, final: bool) -> None:
    """A component's start (`final` False) or end report: the batch's robust count."""
    if callback is not None:
        callback(AttackStep(name, int(final), 1, int(robust.sum()), len(robust), final=final))


def _renamed(callback: StepCallback | None, name: str, n: int) -> StepCallback | None:
    """`callback` hearing a component's step reports under its AutoAttack name, over the
    batch's `n` samples."""
    if callback is None:
        return None
    return lambda step: callback(replace(step, stage=name, n=n))
