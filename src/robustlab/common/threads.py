"""torch's CPU thread count for a command: `--threads N|auto` on every CLI command, and the
`threads=` argument of the Python API (issue #37).

torch starts one OpenMP thread per core. Its threads meet at a barrier after every operator,
so on a machine that other CPU-bound processes share, a thread that loses its core stalls the
others: measured on a 2-core machine with one other busy process, an evaluation took over 56
minutes at torch's default of 2 threads and 183 s at 1 (docs/performance.md, "Threads").
"auto" therefore counts the cores other processes leave free:

- `OMP_NUM_THREADS` set: that number (the user's, or the torchrun launcher's share);
- else `round(cores - busy)`, at least 1 and at most the cores this process may run on
  (`os.sched_getaffinity`): on an idle machine every core (torch's own default), with one
  other busy process on 2 cores 1. `busy` is the 1-minute load average (`os.getloadavg`)
  when it is under half a core; otherwise the cores other processes use right now, measured
  over `SAMPLE_S` from `/proc/stat` less this process's own CPU time (the load average lags by
  a minute: a command started just after another would count its predecessor's load), and
  the load average where `/proc/stat` is missing.

An explicit `--threads N` is obeyed; when N exceeds the free cores a one-line warning says so.
`bench/thread_policy.py` measures the choice. This module reads the machine only when asked
(nothing happens at import time) and restores the previous count when its block ends.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from robustlab.common.checks import check_int, check_threads
from robustlab.common.errors import ConfigError

AUTO = "auto"
SAMPLE_S = 0.05  # how long "auto" watches the CPUs when the load average says they were busy
THREADS_HELP = ("torch CPU threads: N, or auto (default: OMP_NUM_THREADS if set, else the "
                "cores the 1-minute load average leaves free, at least 1; docs/performance.md)")


@dataclass(frozen=True)
class Machine:
    """What the policy reads: the usable cores, the 1-minute load average (None where the OS
    has none), OMP_NUM_THREADS (None when unset or not a positive integer), and the cores
    other processes keep busy right now (`busy_now`, None when not measured)."""

    cores: int
    load: float | None
    omp: int | None
    busy_now: float | None = None

    @property
    def busy(self) -> float | None:
        """Cores other processes use: measured now where measured, else the load average."""
        return self.busy_now if self.busy_now is not None else self.load

    @property
    def free(self) -> float | None:
        """Cores not busy with other processes (None without a load average)."""
        return None if self.busy is None else max(0.0, self.cores - self.busy)


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen, why (`reason`, for the log) and a warning line when the
    machine's load makes it a bad choice (None otherwise)."""

    threads: int
    reason: str
    warning: str | None = None


def read_machine() -> Machine:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        load: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        load = None
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    omp_n = int(omp) if omp.isdigit() and int(omp) > 0 else None
    busy_now = None
    if omp_n is None and load is not None and load >= 0.5:  # idle machines cost no wait
        busy_now = others_busy_now(SAMPLE_S)
    return Machine(max(cores, 1), load, omp_n, busy_now)


def others_busy_now(seconds: float) -> float | None:
    """Cores busy over the next `seconds` with other processes' work: the CPU time of the
    cores this process may run on (`/proc/stat`) less this process's own; None where
    `/proc/stat` is missing."""
    try:
        mine = {f"cpu{c}" for c in os.sched_getaffinity(0)}
        b0, own0, t0 = _cpu_snapshot(mine)
        time.sleep(seconds)
        b1, own1, t1 = _cpu_snapshot(mine)
    except (AttributeError, OSError, ValueError, IndexError):
        return None
    return max(0.0, ((b1 - b0) - (own1 - own0)) / max(t1 - t0, 1e-3))


def _cpu_snapshot(cpus: set[str]) -> tuple[float, float, float]:
    """(busy CPU seconds of `cpus` since boot, this process's CPU seconds, monotonic time)."""
    busy = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name in cpus:
                ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait ... steal
                busy += sum(ticks) - ticks[3] - ticks[4]
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()


def auto_threads(m: Machine) -> ThreadChoice:
    """The "auto" policy (module docstring) for machine `m`."""
    if m.omp is not None:
        return ThreadChoice(m.omp, f"OMP_NUM_THREADS={m.omp}",
                            _warning(m.omp, m, "OMP_NUM_THREADS"))
    if m.free is None:
        return ThreadChoice(m.cores, f"{m.cores} cores (no load average on this system)")
    n = min(m.cores, max(1, int(m.free + 0.5)))
    return ThreadChoice(n, f"auto: {m.cores} cores, {m.busy:.2f} busy with other work")


def choose_threads(value: int | str | None, machine: Machine | None = None) -> ThreadChoice:
    """`value` (an int >= 1, "auto" or None = auto) as a `ThreadChoice`; a bad value raises
    `ConfigError` naming `threads`."""
    m = machine or read_machine()
    if value is None or (isinstance(value, str) and value.strip().lower() == AUTO):
        return auto_threads(m)
    n = check_int("threads", value, 1, error=ConfigError)
    check_threads("threads", n, cores=m.cores, error=ConfigError)  # <= 4 per core
    return ThreadChoice(n, f"--threads {n}", _warning(n, m, "--threads"))


def _warning(n: int, m: Machine, source: str) -> str | None:
    """A warning line when `n` threads exceed the free cores by half a core or more."""
    if n <= 1 or m.free is None or n < m.free + 0.5:
        return None
    return (f"warning: {source} {n} but other processes keep {m.busy:.2f} of {m.cores} cores "
            f"busy (about {m.free:.1f} free): torch's threads wait for each other, "
            f"so one that waits for a busy core slows every operator, often many times over; "
            f"--threads {max(1, int(m.free + 0.5))} (or auto) avoids it")


@contextlib.contextmanager
def use_threads(value: int | str | None, *, say: Callable[[str], None] | None = None,
                machine: Machine | None = None) -> Iterator[ThreadChoice]:
    """torch's intra-op threads set to `choose_threads(value)` for the block, then restored
    (a command run in a long-lived process must not change what the process computes next).
    The inter-op pool is set to the same count where torch still allows it (only before its
    first parallel work; it cannot be restored). `say` receives the warning line, if any."""
    import torch

    choice = choose_threads(value, machine)
    if choice.warning and say is not None:
        say(choice.warning)
    previous = torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    with contextlib.suppress(RuntimeError):  # "cannot set ... after parallel work has started"
        torch.set_num_interop_threads(choice.threads)
    try:
        yield choice
    finally:
        torch.set_num_threads(previous)


def parse_threads(text: str) -> int | str:
    """argparse `type=` for `--threads`: an integer >= 1 or "auto"."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        n = int(check_int("--threads", int(text), 1, error=ConfigError))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 1 or auto, got {text!r}") from None
    try:  # at most 4 per core: `--threads 1000` is a typo, not a plan
        return int(check_threads("--threads", n, error=ConfigError))
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--threads: ")) from None


def add_threads_option(parser: argparse.ArgumentParser, *, help: str = THREADS_HELP) -> bool:
    """Add `--threads N|auto` (default auto) to `parser`; False if it has one already."""
    try:
        parser.add_argument("--threads", type=parse_threads, default=AUTO, metavar="N|auto",
                            help=help)
    except argparse.ArgumentError:
        return False
    return True
