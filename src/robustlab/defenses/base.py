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

A defense declares its options once, as typed `robustlab.common.options.Option`s in `OPTIONS`:
`__init__` resolves them (defaults, `common/checks.py` messages, unknown options named from
the declaration, an option without a default required) into attributes, raising
`DefenseError`. A module the defense needs (the autoencoder) is an argument, never an option;
an option that names a run folder holding that module is declared in `RUN_MODELS`, and the
runs layer opens the folder (defenses import nothing from `robustlab.runs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from robustlab.common import checks
from robustlab.common.options import Option, resolve_options, unknown_options


class DefenseError(ValueError):
    """An invalid defense option or input; the message names the option, the value and what was
    expected."""


@dataclass(frozen=True)
class RunModel:
    """An option naming a run folder whose trained model the defense takes as the argument
    `argument`: the runs layer opens the folder, checks that it trained the registered model
    `model` (else the error says `hint`) and passes the model in."""

    argument: str
    model: str
    hint: str = ""


def required_options(spec: dict[str, Option]) -> list[str]:
    """The options of `spec` without a default (default None, null not allowed)."""
    return [k for k, o in spec.items() if o.default is None and not o.allow_none]


def resolve_defense_options(name: str, spec: dict[str, Option],
                            given: dict[str, Any]) -> dict[str, Any]:
    """Every option of `spec` for defense `name`, checked; an unknown or missing option, or a
    bad value, is a `DefenseError` naming it."""
    missing = [k for k in required_options(spec) if k not in given]
    if missing and not unknown_options(spec, given):
        raise DefenseError(f"defense {name!r} needs option(s) {', '.join(missing)}; it "
                           f"accepts: {', '.join(spec)}")
    return resolve_options(spec, given, owner=f"defense {name!r}", error=DefenseError)


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
    #: the defense's options, declared once; `__init__` sets each as an attribute.
    OPTIONS: ClassVar[dict[str, Option]] = {}
    #: options that name a run folder whose model the runs layer loads and passes in.
    RUN_MODELS: ClassVar[dict[str, RunModel]] = {}

    def __init__(self, model: nn.Module, **options: Any) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise DefenseError(
                f"model: a defense wraps a classifier nn.Module, got {type(model).__name__}"
            )
        vars(self).update(resolve_defense_options(self.name, self.OPTIONS, options))
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
        """The options' values, `name=value` in declaration order."""
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in self.OPTIONS)


def check_int(field: str, value: Any, low: int, high: int | None = None) -> int:
    """`value` as an int in [low, high]; raise `DefenseError` naming `field` otherwise (for a
    check an `Option` cannot declare)."""
    return checks.check_int(field, value, low, high, error=DefenseError)


def check_image_batch(defense: str, x: Tensor) -> None:
    """Raise if `x` is not a float batch `[N, C, H, W]` (cheap: shape and dtype only)."""
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 4:
        raise DefenseError(
            f"{defense}: expected a float image batch [N, C, H, W], got "
            f"{getattr(x, 'dtype', type(x).__name__)} of shape {tuple(getattr(x, 'shape', ()))}"
        )
