"""Device selection: explicit names only, 'auto' picks CUDA when present."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device name that is malformed or names hardware this machine does not have."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; otherwise the named device (validated)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device: {name!r} requested but CUDA is not available here; use "
                          "'cpu' or 'auto'")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device: {name!r} requested but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"device: {name!r} is not supported; expected 'auto', 'cpu' or "
                          "'cuda[:N]'")
    return device


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process in MiB: CUDA allocator peak on GPU, max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
