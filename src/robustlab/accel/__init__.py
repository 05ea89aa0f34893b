"""Speed machinery shared by attacks, training and certification: nothing here changes a
number, only how fast it is computed.

- `cpu_kernels.py`: while attacking or training on the CPU, 1-channel convolutions, 2x2
  max-pools and ReLUs run on kernels with PyTorch's values (`CPUKernels`);
- `compiled_kernels.py`: the numba loops those kernels use when numba is installed
  (the `fast-cpu` extra); without it the same numbers come from PyTorch, slower;
- `allocator.py`: glibc's malloc thresholds (`tune_malloc`), a process-wide setting.

Process-wide settings are made only by `tune_process()`, which the `robustlab` command and its
worker processes call at their start; a library call (an attack, `robustlab.train`) never
changes the host process. A Python program that wants the same speed calls
`robustlab.accel.tune_process()` once.
"""

from __future__ import annotations

from robustlab.accel.allocator import tune_malloc


def tune_process() -> bool:
    """Make this process's speed settings (today: `tune_malloc`); once per process, idempotent.
    Returns whether anything was set."""
    return tune_malloc()


__all__ = ["tune_malloc", "tune_process"]
