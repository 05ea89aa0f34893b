"""Transfer attack: craft adversarial examples on a surrogate model, use them on the target.

`create("transfer", surrogate=model_b, attack="pgd", eps=..., **attack_kw)` builds the
registered attack `attack` with `eps`, `norm`, `seed` and `attack_kw`; calling
`transfer(model, x, y)` runs it on the SURROGATE and returns its points. The target `model`
is never queried while crafting (black-box transfer): the generic `Attack.__call__` reads the
width of its logits once, to validate the labels, and after crafting one forward pass on the
clean inputs keeps the clean input of every sample the target already misclassifies.

With the inner attacks that stop at a sample's first adversarial iterate (`pgd`, `cw-linf`,
`mifgsm`), the transfer attack asks for the highest-loss iterate instead
(`stop_on_success=False`, unless given): a point just across the surrogate's boundary rarely
crosses the target's, one pushed to high loss does (measured on MNIST LeNet-5s in
tests/attacks/test_fab_square_transfer.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Attack, AttackError, AttackModel
from robustlab.attacks.norms import eps_view
from robustlab.registry import ATTACKS


@ATTACKS.register("transfer")
class Transfer(Attack):
    """Parameters: `surrogate` (an `nn.Module` on the inputs' device; required), `attack`
    (name of the registered attack to run on it, default "pgd"), `eps`, `norm`, `seed`, and
    any further keyword for that attack (e.g. `steps=40`). Targeted when the inner attack
    supports it. `bounded` / `needs_eps` follow the inner attack.
    """

    gradient_based = False  # no gradient of the target model is used

    def __init__(
        self,
        *,
        surrogate: nn.Module | None = None,
        attack: str = "pgd",
        eps: float | Tensor | None = None,
        norm: str = "linf",
        seed: int = 0,
        **attack_kw: Any,
    ) -> None:
        if surrogate is None:
            raise AttackError(
                "surrogate: the transfer attack needs surrogate=<nn.Module>, the model the "
                "adversarial examples are crafted on"
            )
        if not isinstance(surrogate, nn.Module):
            raise AttackError(f"surrogate: expected an nn.Module, got {type(surrogate).__name__}")
        if not isinstance(attack, str) or attack == "transfer":
            raise AttackError(
                f"attack: expected the name of a registered attack other than 'transfer', "
                f"got {attack!r}"
            )
        if attack in ("pgd", "cw-linf", "mifgsm"):
            attack_kw.setdefault("stop_on_success", False)
        inner = ATTACKS.create(attack, eps=eps, norm=norm, seed=seed, **attack_kw)
        self.needs_eps = inner.needs_eps
        self.bounded = inner.bounded
        self.supports_target = inner.supports_target
        self.min_classes = inner.min_classes
        shared = ("adaptive", "eot_iter", "memory_format")
        common = {k: attack_kw[k] for k in shared if k in attack_kw}
        super().__init__(eps=eps, norm=norm, seed=seed, **common)
        self.surrogate = surrogate
        self.attack = inner

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "surrogate": type(self.surrogate).__name__,
            "attack": self.attack.describe(),
        }

    def perturb(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        param = next(self.surrogate.parameters(), None)
        if param is not None and param.device != x.device:
            raise AttackError(
                f"surrogate: its parameters are on {param.device} but x is on {x.device}; "
                "move the surrogate to the inputs' device"
            )
        saved = self.attack.eps
        if saved is not None:  # per-sample eps [N] of this call (callers may pass a subset)
            self.attack.eps = eps
        try:
            x_adv = self.attack(self.surrogate, x, y, target)
        finally:
            self.attack.eps = saved
        # One query of the target on the CLEAN inputs (after crafting, not used by it): a
        # sample it already gets wrong keeps its clean input, so the attack never raises the
        # target's accuracy above its clean accuracy.
        already = model.is_adversarial(x, y, target)
        return torch.where(eps_view(already, x), x, x_adv)
