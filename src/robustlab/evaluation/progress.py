"""Progress of an evaluation on stderr: a tqdm bar per attack on a terminal, one line per
stage otherwise (a log file gets "pgd: 1000 images ... done in 12.3 s", not a bar per update).
Progress never changes a number: it is not an `EvalSettings` field."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

Update = Callable[[int], None]


class Progress:
    """`with progress.stage("pgd", n) as update: ... update(batch_size) ...`; a stage that
    reports no updates (`bar=False`: the curve, the audit) is one line on a terminal too."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr

    @contextmanager
    def stage(self, name: str, n: int, *, bar: bool = True) -> Iterator[Update]:
        if not self.enabled:
            yield _ignore
            return
        if bar and _is_tty(self.stream):
            with tqdm(total=n, desc=name, unit="img", file=self.stream, leave=True) as bar:
                yield bar.update
            return
        t0 = time.perf_counter()
        print(f"  {name}: {n} images ...", end="", file=self.stream, flush=True)
        try:
            yield _ignore
        finally:
            print(f" done in {time.perf_counter() - t0:.1f} s", file=self.stream, flush=True)


def _ignore(_: int) -> None:
    return None


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
