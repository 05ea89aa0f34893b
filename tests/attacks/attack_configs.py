"""Small, fast hyper-parameters for every registered attack (used by the property tests).

Every attack in the registry MUST have an entry here; a new attack without one fails
`test_every_registered_attack_has_a_fast_config`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustlab.attacks import create_attack


def _surrogate() -> nn.Module:
    """A small independent model on `[N, 1, 8, 8]` inputs with 5 classes (transfer source)."""
    g = torch.Generator().manual_seed(123)
    lin = nn.Linear(64, 5)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(5, 64, generator=g) * 0.3)
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin)


FAST: dict[str, dict[str, Any]] = {
    "fgsm": {},
    "fgsm-rs": {},
    "pgd": {"steps": 5, "restarts": 2},
    "patch-local": {"size": 3, "steps": 5, "restarts": 2},
    "patch-universal": {"size": 3, "steps": 5, "batch_size": 6},
    "cw-linf": {"steps": 5},
    "mifgsm": {"steps": 5},
    "apgd-ce": {"steps": 8},
    "apgd-dlr": {"steps": 8},
    "apgd-t": {"steps": 5, "n_target_classes": 3},
    "cw-l2": {"steps": 10, "binary_search_steps": 2},
    "fab": {"steps": 5},
    "fab-t": {"steps": 5, "n_target_classes": 2},
    "square": {"n_queries": 30},
    "transfer": {"attack": "pgd", "steps": 3},
    "autoattack": {"steps": 5, "n_target_classes": 2, "n_queries": 20},
}


def build(name: str, *, eps: Any, norm: str, seed: int = 0, **extra: Any):
    """The attack `name` with its fast config (AutoAttack with cheap counts)."""
    if name == "transfer":
        extra = {"surrogate": _surrogate(), **extra}
    return create_attack(name, eps=eps, norm=norm, seed=seed, **FAST[name], **extra)


def supported_norms(name: str) -> list[str]:
    """The norms ("linf", "l2") the attack `name` can be built for."""
    from robustlab.attacks import AttackError

    out = []
    for norm in ("linf", "l2"):
        try:
            build(name, eps=0.1, norm=norm)
        except AttackError:
            continue
        out.append(norm)
    return out
