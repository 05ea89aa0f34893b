"""The training methods' options: each method lists its options as typed `Option`s
(`robustlab.common.options`, the one option system of every registry kind) in `OPTIONS`;
validation, the defaults and docs/method-options.md (`tests/test_method_options.py` checks it is
current) come from that one declaration. An unknown key or a bad value is a `ConfigError`
naming `method_options.NAME`, before any compute. This module holds the option groups several
methods share (the training-time perturbation, the validation probe).
Subclasses registered under other names change a few defaults with `with_defaults`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from robustlab.common import checks
from robustlab.common import options as common_options
from robustlab.common.errors import ConfigError
from robustlab.common.options import Option, defaults_of, with_defaults
from robustlab.common.renamed import RENAMED_METHOD_OPTIONS
from robustlab.common.vocabulary import OVERFIT_GAP
from robustlab.training.methods.perturb import GENERATORS, L1_GENERATORS


def generator_options(steps: int) -> dict[str, Option]:
    """The options of the training-time perturbation (`methods/perturb.py`), shared by pgd-at
    and the hybrid family; `steps` is the default number of PGD steps (the option's name is
    the attacks' name for it: `--opt steps=7` trains with what `--attack-opt pgd.steps=7`
    evaluates with)."""
    return {
        "generator": Option("pgd", "choice", "how the adversarial examples are made",
                            choices=GENERATORS),
        "steps": Option(steps, "int", "PGD steps (generator pgd)", low=1),
        "step_size": Option(None, "float", "step (null: 2.5 eps / steps for pgd, 1.25 eps for "
                            "fgsm-rs, eps for n-fgsm)", low=0.0, low_open=True, allow_none=True),
        "noise_mult": Option(2.0, "float", "n-fgsm noise, in multiples of eps", low=0.0),
    }


def l1_generator_refusal(spec: dict[str, Option], options: dict[str, Any]) -> str | None:
    """Why the generator options `options` (over the defaults of `spec`) cannot train at
    norm l1, or None: the generator must have an L1 version (`perturb.L1_GENERATORS`), whose
    step adapts itself (`step_size` null), and GradAlign's random point has no L1 ball
    (`grad_align` 0). Values of the wrong type are left to the options' own check."""
    def given(name: str) -> Any:
        return options.get(name, spec[name].default) if name in spec else None

    generator, step, lam = given("generator"), given("step_size"), given("grad_align")
    if isinstance(generator, str) and generator not in L1_GENERATORS:
        return (f"method_options.generator: {generator} has no L1 version (its noise ball is "
                f"a Linf / L2 one); expected one of {', '.join(L1_GENERATORS)} at norm l1")
    if step is not None and checks.is_real(step):
        return (f"method_options.step_size: at norm l1 the step adapts itself (pgd: APGD-L1's, "
                f"from eps down to eps / 10; fgsm: eps); expected null, got {step!r}")
    if checks.is_real(lam) and lam > 0:
        return (f"method_options.grad_align: GradAlign has no L1 version (its random point is "
                f"drawn from a Linf / L2 ball); expected 0 at norm l1, got {lam!r}")
    return None


def guard_options() -> dict[str, Option]:
    """The validation probe and catastrophic-overfitting guard (`methods/validation.py`)."""
    return {
        "val_samples": Option(1000, "int", "validation images the probe attacks", low=1),
        "val_steps": Option(10, "int", "PGD steps of the validation probe", low=1),
        "val_batch": Option(500, "int", "batch size of the validation probe", low=1),
        "co_drop": Option(0.3, "float", "guard: drop of validation PGD accuracy from its best "
                          "that flags catastrophic overfitting", low=0.0, high=1.0),
        "co_floor": Option(0.05, "float", "guard: validation PGD accuracy below this flags it",
                           low=0.0, high=1.0),
        "co_fgsm_high": Option(0.5, "float", "guard: ... while FGSM accuracy stays above this",
                               low=0.0, high=1.0),
        "co_gap": Option(OVERFIT_GAP, "float", "guard: validation FGSM accuracy above PGD "
                         "accuracy by more than this (at the target eps) flags it",
                         low=0.0, high=1.0),
    }


def resolve_options(method: str, spec: dict[str, Option], options: dict[str, Any]
                    ) -> dict[str, Any]:
    """Every option of `spec` for the method `method`: the given value or the default, each
    checked (`ConfigError` naming `method_options.NAME`). A renamed option given under its
    old name from Python (files are upgraded when read) is named with its new one."""
    for old, new in RENAMED_METHOD_OPTIONS.items():
        if old in options and old not in spec and new in spec:
            raise ConfigError(f"method_options.{old}: renamed {new} (the attacks' name for it); "
                              f"expected method_options.{new}={options[old]!r}")
    return common_options.resolve_options(spec, options, owner=f"method {method!r}",
                                          error=ConfigError, prefix="method_options.")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    return checks.check_choice(f"method_options.{name}", value, choices, error=ConfigError)


def check_int(name: str, value: Any, low: int, *, allow_none: bool = False) -> int | None:
    return checks.check_int(f"method_options.{name}", value, low, allow_none=allow_none,
                            error=ConfigError)


def check_float(name: str, value: Any, low: float, high: float = math.inf, *,
                low_open: bool = False, allow_none: bool = False) -> float | None:
    return checks.check_number(f"method_options.{name}", value, low,
                               None if high == math.inf else high, low_open=low_open,
                               allow_none=allow_none, error=ConfigError)


def check_bool(name: str, value: Any) -> bool:
    return checks.check_bool(f"method_options.{name}", value, error=ConfigError)


__all__ = ["Option", "defaults_of", "generator_options", "guard_options",
           "l1_generator_refusal", "resolve_options", "with_defaults"]
