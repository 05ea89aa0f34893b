"""The preprocessing-defense wrapper every defense subclasses, and its option checks.

A defense is `classifier(transform(x))` on pixel-space inputs `x` `[N, C, H, W]` in [0, 1].
It declares to the attacks (see `robustlab.attacks.base.Attack.attack_model`):

- `nondifferentiable`: the transform's true gradient is useless (zero / undefined), so an
  adaptive attack differentiates `bpda_forward(x)` instead (BPDA, Athalye et al. 2018): its
  VALUE is exactly `forward(x)`, its GRADIENT flows through `approximation(x)`, the declared
  differentiable stand-in of the transform (identity by default).
- `randomized`: the transform draws fresh randomness on every call, so an adaptive attack
  averages gradients over several passes (EOT).

The classifier is the submodule `classifier`, so the wrapper's `state_dict` holds its weights
(`classifier.*`) and a run trained behind a defense saves and reloads like any other model.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from robustlab.common.checks import check_bool, check_number
from robustlab.common.checks import check_int as _check_int


class DefenseError(ValueError):
    """An invalid defense option or input; the message names the option, the value and what was
    expected."""


class PreprocessingDefense(nn.Module):
    """Base class: `forward(x) = classifier(transform(x))`.

    Subclasses implement `transform(x)` (`[N, C, H, W]` in [0, 1] -> same shape, in [0, 1]) and,
    when they set `nondifferentiable = True`, may override `approximation(x)` (default identity).
    A defense wrapped around another defense inherits its flags, and `bpda_forward` passes
    through the inner defense's `bpda_forward`, so stacked defenses are attacked adaptively too.
    """

    #: name in `robustlab.registry.DEFENSES` (set by the registry decorator).
    name: str = ""
    #: the transform's gradient is useless -> attacks use `bpda_forward` (BPDA).
    nondifferentiable: bool = False
    #: the transform is random at every call -> attacks average over passes (EOT).
    randomized: bool = False

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise DefenseError(
                f"model: a defense wraps a classifier nn.Module, got {type(model).__name__}"
            )
        self.classifier = model
        # A wrapped defense's declarations carry over to this wrapper (instance attributes).
        if getattr(model, "nondifferentiable", False):
            self.nondifferentiable = True
        if getattr(model, "randomized", False):
            self.randomized = True

    def transform(self, x: Tensor) -> Tensor:
        """The preprocessing: `[N, C, H, W]` in [0, 1] -> same shape, in [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} must implement transform()")

    def approximation(self, x: Tensor) -> Tensor:
        """Differentiable stand-in for `transform` used by BPDA (identity unless overridden)."""
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.transform(x))

    def bpda_forward(self, x: Tensor) -> Tensor:
        """Logits equal to `forward(x)`; gradients flow through `approximation` instead of the
        transform (straight-through: `a(x) + (t(x) - a(x)).detach()`)."""
        if type(self).nondifferentiable:
            approx = self.approximation(x)
            z = approx + (self.transform(x) - approx).detach()
        else:
            z = self.transform(x)
        inner = self.classifier
        if getattr(inner, "nondifferentiable", False) and hasattr(inner, "bpda_forward"):
            return inner.bpda_forward(z)
        return inner(z)

    def extra_repr(self) -> str:
        return (f"nondifferentiable={self.nondifferentiable}, randomized={self.randomized}, "
                f"{self.describe_options()}")

    def describe_options(self) -> str:
        return ""


def check_int(field: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high]; raise `DefenseError` naming `field` otherwise."""
    return _check_int(field, value, low, high, error=DefenseError)


def check_positive_float(field: str, value: Any) -> float:
    """`value` as a finite float > 0; raise `DefenseError` naming `field` otherwise."""
    return check_number(field, value, 0.0, low_open=True, error=DefenseError)


def check_flag(field: str, value: Any) -> bool:
    """`value` if it is True or False; raise `DefenseError` naming `field` otherwise."""
    return check_bool(field, value, error=DefenseError)


def check_image_batch(defense: str, x: Tensor) -> None:
    """Raise if `x` is not a float batch `[N, C, H, W]` (cheap: shape and dtype only)."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 4:
        raise DefenseError(
            f"{defense}: expected a float image batch [N, C, H, W], got "
            f"{getattr(x, 'dtype', type(x).__name__)} of shape {tuple(getattr(x, 'shape', ()))}"
        )
