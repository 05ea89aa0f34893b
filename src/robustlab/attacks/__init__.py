"""Adversarial attacks: `create_attack(name, **kw)` -> `Attack`; `x_adv = attack(model, x, y)`.

Every module of this package is imported here (`plugins.import_submodules`), so an attack
file registers itself in `robustlab.registry.ATTACKS`: adding one is its file and its test.
See `robustlab.attacks.base` for the contract and for how to write a new attack.
"""

from __future__ import annotations

from typing import Any

from robustlab.attacks.adaptive import BPDAWrapper, bpda
from robustlab.attacks.base import Attack, AttackError, AttackModel, input_gradient
from robustlab.plugins import import_submodules
from robustlab.registry import ATTACKS

import_submodules(__name__, __path__)  # every attack file registers itself


def create_attack(name: str, **kwargs: Any) -> Attack:
    """Build the attack registered as `name` with its options (`eps` and those the attack
    declares, `Attack.options()`). Every value is checked against the declaration before any
    compute: an `AttackError` names `NAME.OPTION`, and an option the attack does not declare
    is named with the ones it does."""
    factory = ATTACKS.get(name)
    if isinstance(factory, type) and issubclass(factory, Attack):
        factory.check_option_names(kwargs)
    return ATTACKS.create(name, **kwargs)


create = create_attack


def list_attacks() -> list[str]:
    """Sorted names of every registered attack."""
    return ATTACKS.list()


__all__ = [
    "Attack",
    "AttackError",
    "AttackModel",
    "BPDAWrapper",
    "bpda",
    "create",
    "create_attack",
    "input_gradient",
    "list_attacks",
]
