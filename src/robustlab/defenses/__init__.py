"""Input-preprocessing defenses: classifier wrappers registered in `robustlab.registry.DEFENSES`.

`create_defense(name, model=classifier, **options)` returns an `nn.Module` whose forward is
`classifier(transform(x))` on pixel-space inputs in [0, 1], declaring `nondifferentiable`
(BPDA via `bpda_forward`) and `randomized` (EOT) for the attacks. See docs/defenses.md.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from robustlab.defenses.base import DefenseError, PreprocessingDefense, RunModel
from robustlab.models.autoencoder import DenoisingAutoencoder
from robustlab.plugins import import_submodules
from robustlab.registry import DEFENSES

import_submodules(__name__, __path__)  # every defense file registers itself


def list_defenses() -> list[str]:
    """Sorted names of every registered defense."""
    return DEFENSES.list()


def create_defense(name: str, *, model: nn.Module, **options: Any) -> PreprocessingDefense:
    """Wrap classifier `model` in defense `name` with its `options` (see `list_defenses()`;
    each defense declares them in `OPTIONS`). An unknown or missing option, or a bad value,
    raises `DefenseError` naming it, before any compute."""
    return DEFENSES.create(name, model=model, **options)


__all__ = ["DefenseError", "DenoisingAutoencoder", "PreprocessingDefense", "RunModel",
           "create_defense", "list_defenses"]
