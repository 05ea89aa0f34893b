"""Progress inside one attack call: an optional callback the long attacks report to.

An attack never prints and never needs a callback. A caller that wants to watch a call attaches
one for that call only::

    with reporting(attack, callback):
        x_adv = attack(model, x, y)

and `callback(AttackStep)` then hears, at most `GROUPS` times per stage plus its end, how far
the stage is and how many samples of the call are still robust. AutoAttack reports each
component (apgd-ce, apgd-t, fab-t, square) as its own stage and ends each with a `final` step;
Square (per query group), FAB (per step group, over its targets and restarts), CW-L2 (per
step group, over its binary-search rounds) and APGD-T (per target class) report their loops.
The callback lives on the attack instance (`_progress`, not part of `describe()`) for the
`with` block only: no globals, nothing at import time, and without it an attack computes
exactly what it computes with it (the robust counts are read, never changed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

GROUPS = 20  # step groups a stage reports at most (besides its end)


@dataclass(frozen=True)
class AttackStep:
    """One report: `stage` (the attack's or AutoAttack component's name) has done `done` of
    at most `total` steps (iterations, queries, target runs; it may stop early once every
    sample is broken); `robust` of the call's `n` samples are not adversarial yet (`measure`
    says what the count means); `final`: the stage has ended."""

    stage: str
    done: int
    total: int
    robust: int
    n: int
    final: bool = False
    measure: str = "robust accuracy"

    @property
    def accuracy(self) -> float:
        return self.robust / self.n if self.n else 0.0


StepCallback = Callable[[AttackStep], None]


@contextlib.contextmanager
def reporting(attack: Any, callback: StepCallback | None) -> Iterator[Any]:
    """`attack` reporting to `callback` inside the block (None: no reports), then as before."""
    previous = getattr(attack, "_progress", None)
    attack._progress = callback
    try:
        yield attack
    finally:
        attack._progress = previous


def callback_of(attack: Any) -> StepCallback | None:
    return getattr(attack, "_progress", None)


class StepReporter:
    """Calls `callback` at the step groups of a stage of `total` steps over `n` samples:
    `step(done, robust)` reports when `done` reaches the next group boundary (every
    `total / GROUPS` steps) or the end; `robust()` (the count of samples still robust) is
    evaluated only then, so an attack pays for the count (one device sync) 20 times a stage."""

    def __init__(self, callback: StepCallback, stage: str, total: int, n: int,
                 measure: str = "robust accuracy") -> None:
        self.callback, self.stage, self.total, self.n = callback, stage, max(total, 1), n
        self.measure = measure
        self.every = max(1, -(-self.total // GROUPS))
        self.next = self.every

    def step(self, done: int, robust: Callable[[], int]) -> None:
        if done < self.next and done < self.total:
            return
        self.next = (done // self.every + 1) * self.every
        self.callback(AttackStep(self.stage, min(done, self.total), self.total, int(robust()),
                                 self.n, measure=self.measure))


def step_reporter(attack: Any, total: int, n: int, *, stage: str | None = None,
                  measure: str = "robust accuracy") -> StepReporter | None:
    """A `StepReporter` for `attack`'s callback, or None when nobody listens (the attack then
    skips every report)."""
    callback = callback_of(attack)
    if callback is None:
        return None
    return StepReporter(callback, stage or attack.name or type(attack).__name__, total, n,
                        measure)
