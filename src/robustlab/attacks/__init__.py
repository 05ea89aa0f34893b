"""Adversarial attacks: `create_attack(name, **kw)` -> `Attack`; `x_adv = attack(model, x, y)`.

Every attack is registered in `robustlab.registry.ATTACKS` by importing its module here.
See `robustlab.attacks.base` for the contract and for how to write a new attack.
"""

from __future__ import annotations

import re
from typing import Any

from robustlab.attacks import (  # noqa: F401  (importing registers the attacks)
    apgd,
    autoattack,
    cw,
    fab,
    fgsm,
    mifgsm,
    patch,
    pgd,
    square,
    transfer,
)
from robustlab.attacks.adaptive import BPDAWrapper, bpda
from robustlab.attacks.base import Attack, AttackError, AttackModel, input_gradient
from robustlab.registry import ATTACKS


def create_attack(name: str, **kwargs: Any) -> Attack:
    """Build the attack registered as `name` with its hyper-parameters (validated here; an
    option the attack does not take is an `AttackError` listing the ones it does)."""
    try:
        return ATTACKS.create(name, **kwargs)
    except TypeError as err:  # an option no __init__ along the way takes
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(err))
        factory = ATTACKS.get(name)
        if bad is None or not (isinstance(factory, type) and issubclass(factory, Attack)):
            raise
        raise AttackError(f"{name}: unknown option {bad.group(1)!r}; {name} takes "
                          f"{', '.join(factory.options())} (docs/attack-options.md)") from None


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
