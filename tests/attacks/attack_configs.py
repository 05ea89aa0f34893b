"""How the property tests build every registered attack: with its own `quick_options`
(declared in the attack's file, `Attack.quick_options`), so a new attack joins the tests
with nothing to add here. The transfer attack gets a small surrogate model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustlab.attacks import create_attack
from robustlab.registry import ATTACKS


def _surrogate() -> nn.Module:
    """A small independent model on `[N, 1, 8, 8]` inputs with 5 classes (transfer source)."""
    g = torch.Generator().manual_seed(123)
    lin = nn.Linear(64, 5)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(5, 64, generator=g) * 0.3)
        lin.bias.zero_()
    return nn.Sequential(nn.Flatten(), lin)


def fast_options(name: str) -> dict[str, Any]:
    """The attack's own `quick_options` (few steps / queries; declared in its file)."""
    return dict(ATTACKS.get(name).quick_options)


def build(name: str, *, eps: Any, norm: str, seed: int = 0, **extra: Any):
    """The attack `name` with its fast config (AutoAttack with cheap counts)."""
    if name == "transfer":
        extra = {"surrogate": _surrogate(), **extra}
    return create_attack(name, eps=eps, norm=norm, seed=seed, **fast_options(name), **extra)


def some_eps(norm: str) -> float:
    """A small valid eps of `norm` (l0: a whole number of pixels)."""
    return 1 if norm == "l0" else 0.1


def supported_norms(name: str) -> list[str]:
    """The norms (of the vocabulary's NORMS, in its order) the attack `name` can be built for."""
    from robustlab.attacks import AttackError
    from robustlab.common.vocabulary import NORMS

    out = []
    for norm in NORMS:
        try:
            build(name, eps=some_eps(norm), norm=norm)
        except AttackError:
            continue
        out.append(norm)
    return out
