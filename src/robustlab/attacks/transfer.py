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

import inspect
from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.base import Attack, AttackError, AttackModel
from robustlab.attacks.norms import eps_view
from robustlab.common.checks import check_choice
from robustlab.common.options import Option, options_signature
from robustlab.registry import ATTACKS

# inner attacks that stop at a sample's first adversarial iterate unless told otherwise
_STOPPING = ("pgd", "cw-linf", "mifgsm")


@ATTACKS.register("transfer")
class Transfer(Attack):
    """Crafts on `surrogate` (an `nn.Module` on the inputs' device; required) with the
    registered attack `attack`. The common options go to both; every further keyword goes to
    that attack and is checked against its options (e.g. `steps=40`: `pgd.steps`). Targeted
    when the inner attack supports it. `bounded` / `needs_eps` follow the inner attack.
    """

    quick_options = {"attack": "pgd", "steps": 3}

    gradient_based = False  # no gradient of the target model is used
    OPTIONS = {"attack": Option("pgd", "str", "the registered attack run on the surrogate "
                                "(any but transfer); its options pass through")}

    def __init__(self, *, surrogate: nn.Module | None = None, **options: Any) -> None:
        if surrogate is None:
            raise AttackError(
                "surrogate: the transfer attack needs surrogate=<nn.Module>, the model the "
                "adversarial examples are crafted on"
            )
        if not isinstance(surrogate, nn.Module):
            raise AttackError(f"surrogate: expected an nn.Module, got {type(surrogate).__name__}")
        type(self).check_option_names(options)  # the inner attack's options included
        own = {k: v for k, v in options.items() if k in self.options() or k == "eps"}
        self._resolve({k: v for k, v in own.items() if k != "eps"})  # transfer.NAME first
        inner_kw = {k: v for k, v in options.items() if k != "attack"}
        name = options.get("attack", "pgd")
        if name in _STOPPING:
            inner_kw.setdefault("stop_on_success", False)
        inner = ATTACKS.create(name, **inner_kw)
        self.needs_eps = inner.needs_eps
        self.bounded = inner.bounded
        self.supports_target = inner.supports_target
        self.min_classes = inner.min_classes
        super().__init__(**own)
        self.surrogate = surrogate
        self.attack = inner

    @classmethod
    def inner_class(cls, name: Any) -> type[Attack]:
        """The registered attack `name` runs on the surrogate (`AttackError` naming
        `transfer.attack` for anything else)."""
        inner = [n for n in ATTACKS.list() if n != "transfer" and isinstance(ATTACKS.get(n), type)
                 and issubclass(ATTACKS.get(n), Attack)]
        return ATTACKS.get(check_choice(cls.field("attack"), name, inner, error=AttackError))

    @classmethod
    def known_options(cls, given: dict[str, Any]) -> list[str]:
        own = super().known_options(given)
        inner = cls.inner_class(given.get("attack", "pgd"))
        return own + [k for k in sorted(inner.options()) if k not in own]

    @classmethod
    def parameters(cls) -> list[inspect.Parameter]:
        return [inspect.Parameter("surrogate", inspect.Parameter.KEYWORD_ONLY, default=None,
                                  annotation="nn.Module"), *super().parameters()]

    @classmethod
    def _signature(cls) -> inspect.Signature:
        return options_signature(cls.options(), before=cls.parameters(),
                                 var_keyword="attack_options")

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
