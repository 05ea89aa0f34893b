"""Progress of an evaluation on stderr: a tqdm bar per attack on a terminal, log lines
otherwise (a log file gets "pgd: 1000 images ... done in 12.3 s", not a bar per update).
Progress never changes a number: it is not an `EvalSettings` field.

Inside an attack, the long ones report their step groups (`attacks/progress.py`): AutoAttack
each component's end with the running robust accuracy, as the original AutoAttack logs it::

      autoattack: 300 images ...
        apgd-ce: robust accuracy 61.0 % (300 images, 12 s)
        apgd-t: robust accuracy 58.3 % (300 images, 80 s)
        ...
      autoattack: done in 301.2 s

and Square, FAB and CW a step line at most every `log_every` seconds ("square: step
1200/4999, robust accuracy 55.0 % of the batch (2 min)"). On a terminal the bar's postfix
shows the stage, its step and the batch's robust accuracy, and each component's line is
written above the bar. With several batches a component's accuracy is over the images it
has attacked so far. `Progress(enabled=False)` prints nothing and the attacks get no callback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

from robustlab.attacks.progress import AttackStep

LOG_EVERY_S = 30.0  # seconds between step lines in a log (component lines always print)


class Progress:
    """`with progress.stage("pgd", n) as stage: ... stage(batch_size) ...`; `stage` also
    takes an attack's step reports (`stage.attack_step`, given to `run_attack`). A stage
    that reports no updates (`bar=False`: the curve, the audit) is one line on a terminal
    too."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, *,
                 log_every: float = LOG_EVERY_S) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.log_every = log_every

    @contextmanager
    def stage(self, name: str, n: int, *, bar: bool = True) -> Iterator[Stage]:
        if not self.enabled:
            yield Stage(None)
            return
        if bar and _is_tty(self.stream):
            with tqdm(total=n, desc=name, unit="img", file=self.stream, leave=True) as tq:
                yield BarStage(tq, self.stream)
            return
        log = LogStage(name, self.stream, self.log_every)
        print(f"  {name}: {n} images ...", end="", file=self.stream, flush=True)
        try:
            yield log
        finally:
            log.close()


class Stage:
    """A stage's receiver: `stage(k)` counts k images done; `stage.attack_step(step)` takes
    an attack's step report (`attack_step` is None when progress is off, so the attacks get
    no callback and skip their reports)."""

    def __init__(self, attack_step: object) -> None:
        self.attack_step = attack_step
        self.t0 = time.perf_counter()
        self.seen: dict[str, list[int]] = {}  # stage -> [robust, images] of finished batches

    def __call__(self, k: int) -> None:
        return None

    def running(self, step: AttackStep) -> tuple[float, int]:
        """(robust accuracy, images) of `step.stage` over the batches it finished so far,
        this one included; only for a `final` step."""
        robust, images = self.seen.setdefault(step.stage, [0, 0])
        self.seen[step.stage] = [robust + step.robust, images + step.n]
        robust, images = self.seen[step.stage]
        return (robust / images if images else 0.0), images

    def elapsed(self) -> str:
        return _duration(time.perf_counter() - self.t0)


class BarStage(Stage):
    """A terminal: the tqdm bar counts images; step reports go to its postfix, a stage's end
    above it."""

    def __init__(self, bar: tqdm, stream: TextIO) -> None:
        super().__init__(self._step)
        self.bar, self.stream = bar, stream

    def __call__(self, k: int) -> None:
        self.bar.update(k)

    def _step(self, step: AttackStep) -> None:
        if step.final:
            acc, images = self.running(step)
            self.bar.write(f"  {step.stage}: {step.measure} {_pct(acc)} ({images} images, "
                           f"{self.elapsed()})", file=self.stream)
        where = "done" if step.final else f"{step.done}/{step.total}"
        self.bar.set_postfix_str(f"{step.stage} {where}, {step.measure} "
                                 f"{_pct(step.accuracy)}")


class LogStage(Stage):
    """A log: the stage's start line; each attack component's end and, at most every
    `log_every` seconds, a step line, on lines of their own; "done in" at the end."""

    def __init__(self, name: str, stream: TextIO, log_every: float) -> None:
        super().__init__(self._step)
        self.name, self.stream, self.log_every = name, stream, log_every
        self.open = True  # the start line awaits its " done in ..."
        self.last = self.t0

    def _line(self, text: str) -> None:
        if self.open:
            print(file=self.stream)
            self.open = False
        print(text, file=self.stream, flush=True)
        self.last = time.perf_counter()

    def _step(self, step: AttackStep) -> None:
        if step.final:
            acc, images = self.running(step)
            self._line(f"    {step.stage}: {step.measure} {_pct(acc)} ({images} images, "
                       f"{self.elapsed()})")
        elif step.done > 0 and time.perf_counter() - self.last >= self.log_every:
            self._line(f"    {step.stage}: step {step.done}/{step.total}, {step.measure} "
                       f"{_pct(step.accuracy)} of the batch ({self.elapsed()})")

    def close(self) -> None:
        took = f"done in {time.perf_counter() - self.t0:.1f} s"
        if self.open:
            print(f" {took}", file=self.stream, flush=True)
        else:
            print(f"  {self.name}: {took}", file=self.stream, flush=True)


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
