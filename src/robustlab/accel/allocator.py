"""glibc's malloc, tuned for the CPU paths (`tune_malloc`).

An input-gradient pass on the CPU allocates and frees the same few-MB buffers (oneDNN's
blocked-layout copies of an activation, e.g. 128 x 6 x 28 x 28 padded to 16 channels) at
every step. glibc serves blocks above its mmap threshold with a fresh `mmap` and returns them
on free, and trims the heap top above its trim threshold, so each step touches new pages:
page faults, not arithmetic, dominated such a pass (LeNet-5, batch 128, one thread, a fresh
process: 62,751 minor page faults in 20 passes with glibc's defaults, 22 with both thresholds
raised, and about 1.8x the time per pass; bench/malloc_faults.py). glibc raises its mmap
threshold by itself after a large block is freed, so the cost came and went with what a
process had run before (the training loop, after its data loading, measured the same either
way; docs/performance.md).

`tune_malloc()` fixes both thresholds at `THRESHOLD_BYTES` through `mallopt`, once per
process: blocks below it come from the heap and freed memory below it stays mapped (at most
that much more resident memory). It is a process-wide setting, so no library call makes it:
the `robustlab` command and its worker processes call it at their start (`tune_process`), a
Python program calls `robustlab.accel.tune_process()` itself. It changes nothing off glibc
(macOS, musl, Windows) or when the environment sets `ROBUSTLAB_MALLOC_TUNING=0`, and it never
changes numbers, only where memory comes from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

THRESHOLD_BYTES = 64 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
ENV_SWITCH = "ROBUSTLAB_MALLOC_TUNING"


@functools.cache
def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds to `THRESHOLD_BYTES` (once; later calls return
    the first result). Returns whether the thresholds were set."""
    if os.environ.get(ENV_SWITCH, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES)
                and mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES))
