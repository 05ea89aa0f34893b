"""Input-preprocessing defenses: classifier wrappers registered in `robustlab.registry.DEFENSES`.

`create_defense(name, model=classifier, **options)` returns an `nn.Module` whose forward is
`classifier(transform(x))` on pixel-space inputs in [0, 1], declaring `nondifferentiable`
(BPDA via `bpda_forward`) and `randomized` (EOT) for the attacks. See docs/defenses.md.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from robustlab.defenses import autoencoder, bit_depth, gaussian_noise, jpeg, median  # noqa: F401
from robustlab.defenses.autoencoder import DenoisingAutoencoder, load_autoencoder
from robustlab.defenses.base import DefenseError, PreprocessingDefense
from robustlab.registry import DEFENSES


def list_defenses() -> list[str]:
    """Sorted names of every registered defense."""
    return DEFENSES.list()


def create_defense(name: str, *, model: nn.Module, **options: Any) -> PreprocessingDefense:
    """Wrap classifier `model` in defense `name` with its `options` (see `list_defenses()`).

    An option the defense does not take raises `TypeError` listing the ones it does (the
    training setup reports it as a `defense_options` error); a bad value raises `DefenseError`.
    """
    factory = DEFENSES.get(name)
    params = [p for p in inspect.signature(factory).parameters.values()
              if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "model"]
    accepted = [p.name for p in params]
    unknown = sorted(set(options) - set(accepted), key=str)
    if unknown:
        raise TypeError(f"defense {name!r} got unknown option(s) {', '.join(map(str, unknown))}; "
                        f"it accepts: {', '.join(accepted) if accepted else 'no options'}")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty
               and p.name not in options]
    if missing:
        raise TypeError(f"defense {name!r} needs option(s) {', '.join(missing)}; it accepts: "
                        f"{', '.join(accepted)}")
    return factory(model=model, **options)


__all__ = ["DefenseError", "DenoisingAutoencoder", "PreprocessingDefense", "create_defense",
           "list_defenses", "load_autoencoder"]
