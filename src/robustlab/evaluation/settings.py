"""`EvalSettings`: what an evaluation measures, validated before any compute.

Units: `eps` is the threat-model radius in pixel units of [0, 1] images under `norm`;
`curve_factors` multiply `eps` for the accuracy-versus-eps curve.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from robustlab.common.checks import (
    check_choice,
    check_int,
    check_number,
    check_pixel_count,
    check_seed,
)

# CURVE_FACTORS: the accuracy-versus-eps curve's budgets, as multiples of eps (8 PGD runs on
# curve_n images; 1 x reuses the evaluated PGD), also reproduce's default (EvalPlan).
from robustlab.common.vocabulary import CURVE_FACTORS, NORM_DEFAULT_ATTACKS, NORMS


class EvalSettingsError(ValueError):
    """An invalid evaluation setting; the message names the field, the value and what is allowed."""


def require_eps(eps: Any, owner: str) -> None:
    """The budget has no default: 0.3 is MNIST's, 12 times CIFAR-10's, and a default would
    silently attack CIFAR at it. `EvalSettingsError` naming `owner` when `eps` is None."""
    if eps is None:
        raise EvalSettingsError(f"eps: {owner} needs the budget, in pixel units of [0, 1] "
                                "images (e.g. 0.3 for MNIST, 0.1 Fashion-MNIST, 8/255 = 0.031 "
                                "CIFAR-10: robustlab.experiments.presets.STANDARD_EPS); no "
                                "default suits every dataset")


# Options no attack of an evaluation may take: the evaluation's budget is `eps` / `norm` (a
# per-attack eps would attack outside the ball the result file records; out-of-ball examples
# then count as clean, so robustness would be overstated).
BUDGET_OPTIONS = ("eps", "norm")


def _check_attack_options(options: Any, names: list[str]) -> None:
    """`attack_options`: a dict {attack name: {option: value}} for evaluated attacks, with no
    budget option (eps / norm are the evaluation's own settings)."""
    if not isinstance(options, dict):
        raise EvalSettingsError(f"attack_options: expected a dict {{attack name: {{option: "
                                f"value}}}}, got a {type(options).__name__}")
    unknown = sorted(set(options) - set(names), key=str)
    if unknown:
        raise EvalSettingsError(f"attack_options: options for attack(s) {unknown} that are "
                                f"not evaluated ({names})")
    for name, opts in options.items():
        if not isinstance(opts, dict):
            raise EvalSettingsError(f"attack_options.{name}: expected a dict {{option: value}}, "
                                    f"got a {type(opts).__name__}")
        for key in (k for k in BUDGET_OPTIONS if k in opts):
            raise EvalSettingsError(
                f"attack_options.{name}.{key}: expected no per-attack {key}, got "
                f"{opts[key]!r}; the budget is the evaluation's, one for every attack: use "
                f"--{key} (robustlab.evaluate: {key}=)")


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation settings. `attacks` are registry names (checked in `validate`).

    - `eps` (required, no default: `require_eps`): the budget under `norm`.
    - `n`: evaluate the first `n` test images (None: all).
    - `adaptive`: attacks use BPDA / EOT where the model declares them (the honest default).
    - `curve_attack` / `curve_factors` / `curve_n`: accuracy-versus-eps curve, on the first
      `curve_n` images (None: all `n`).
    - `audit` / `audit_n`: run the gradient-masking audit on the first `audit_n` images, with
      Square at `audit_square_queries` queries and a PGD of `audit_steps_factor` x the steps
      and `audit_restarts` restarts.
    - `mixed_attack`: the attack whose examples form the adversarial half of the mixed test set
      (odd indices adversarial, even indices clean); None picks "pgd" if evaluated, else the
      first attack.
    - `attack_options`: extra keyword arguments per attack name, e.g. {"pgd": {"steps": 20}}.
    - `label`: free-form tag stored with the result (e.g. the budget's name "paper").
    """

    attacks: tuple[str, ...] = ("fgsm", "pgd")
    eps: float | None = None  # required: __post_init__ refuses None
    norm: str = "linf"
    n: int | None = 1000
    batch_size: int = 500
    seed: int = 0
    adaptive: bool = True
    curve_attack: str | None = "pgd"
    curve_factors: tuple[float, ...] = CURVE_FACTORS
    curve_n: int | None = 500
    audit: bool = True
    audit_n: int | None = 200
    audit_square_queries: int = 1000
    audit_steps_factor: int = 5
    audit_restarts: int = 3
    mixed_attack: str | None = None
    ece_bins: int = 15
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        require_eps(self.eps, "EvalSettings")

    def validate(self) -> EvalSettings:
        from robustlab.plugins import load_plugins
        from robustlab.registry import ATTACKS

        load_plugins()

        if not self.attacks:
            raise EvalSettingsError("attacks: expected at least one attack name, got none "
                                    f"(available: {', '.join(ATTACKS.list()) or '(none)'})")
        names = list(self.attacks) + [a for a in (self.curve_attack, self.mixed_attack) if a]
        for name in names:
            if name not in ATTACKS:
                raise EvalSettingsError(f"attacks: unknown attack {name!r}; available: "
                                        f"{', '.join(ATTACKS.list()) or '(none)'}")
        if len(set(self.attacks)) != len(self.attacks):
            raise EvalSettingsError(f"attacks: duplicate names in {list(self.attacks)}")
        if self.mixed_attack is not None and self.mixed_attack not in self.attacks:
            raise EvalSettingsError(f"mixed_attack: {self.mixed_attack!r} is not among the "
                                    f"evaluated attacks {list(self.attacks)}")
        check_number("eps", self.eps, 0.0, error=EvalSettingsError)
        check_choice("norm", self.norm, NORMS, error=EvalSettingsError)
        if self.norm == "l0":  # a whole number of pixels (a pixel counts once over channels)
            check_pixel_count("eps", self.eps, error=EvalSettingsError)
        _check_attack_norms(self, ATTACKS)
        if self.norm == "linf" and self.eps > 1:
            raise EvalSettingsError(f"eps: {self.eps:g} exceeds 1, the whole pixel range of "
                                    "[0, 1] images (write 8/255 = 0.031, not 8)")
        for fname in ("n", "curve_n", "audit_n"):
            check_int(fname, getattr(self, fname), 1, allow_none=True, error=EvalSettingsError)
        for fname, low in (("batch_size", 1), ("seed", 0), ("ece_bins", 1),
                           ("audit_square_queries", 1), ("audit_steps_factor", 1),
                           ("audit_restarts", 1)):
            check_int(fname, getattr(self, fname), low, error=EvalSettingsError)
        check_seed("seed", self.seed, error=EvalSettingsError)  # torch.manual_seed's range
        if any(not isinstance(f, (int, float)) or f < 0 for f in self.curve_factors):
            raise EvalSettingsError(f"curve_factors: expected numbers >= 0, "
                                    f"got {list(self.curve_factors)}")
        _check_attack_options(self.attack_options, names)
        return self

    @property
    def mixed(self) -> str:
        if self.mixed_attack:
            return self.mixed_attack
        return "pgd" if "pgd" in self.attacks else self.attacks[0]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["attacks"] = list(self.attacks)
        d["curve_factors"] = list(self.curve_factors)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EvalSettingsError(f"evaluation settings: unknown field(s) {', '.join(unknown)}; "
                                    f"known: {', '.join(sorted(known))}")
        data = dict(data)
        for key in ("attacks", "curve_factors"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)

    def key(self) -> str:
        """Short stable hash of every setting that changes the numbers (not `label`)."""
        d = self.to_dict()
        d.pop("label")
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# the gradient-masking audit's attacks (evaluation/audit.py): it runs only where they do
AUDIT_ATTACKS = ("pgd", "square")
# the eps curve's attack when it is on (`robustlab evaluate`'s default, `curve=True`)
CURVE_ATTACK = "pgd"
# why each is off at a norm its attacks do not attack at (`off_at`)
_OFF_WHY = {"curve": "the eps curve uses PGD", "audit": "the gradient-masking audit runs "
            "PGD and Square"}


def attacks_at(names: tuple[str, ...], norm: str) -> bool:
    """Whether every attack of `names` attacks at `norm` (its declared `norm` choices)."""
    from robustlab.plugins import load_plugins
    from robustlab.registry import ATTACKS

    load_plugins()
    return all(name in ATTACKS and "norm" in ATTACKS.get(name).options()
               and norm in ATTACKS.get(name).options()["norm"].choices for name in names)


def _norms_of(names: tuple[str, ...]) -> str:
    return "/".join(n for n in NORMS if attacks_at(names, n))


def default_attacks(norm: Any, usual: tuple[str, ...]) -> tuple[str, ...]:
    """The attacks to run when none are given: `NORM_DEFAULT_ATTACKS` at l1 / l0, else the
    caller's `usual` (an unknown norm is left to `EvalSettings.validate` to refuse)."""
    key = norm.strip().lower() if isinstance(norm, str) else norm
    return NORM_DEFAULT_ATTACKS.get(key, usual) if isinstance(key, str) else usual


def off_at(norm: Any) -> dict[str, str]:
    """{"curve" / "audit": the one line saying it is off at `norm` and why} for each of the
    two whose attacks do not attack at `norm` (empty at linf / l2 and at an unknown norm),
    e.g. "curve: off at l0 (the eps curve uses PGD, linf/l2 only)"."""
    if not isinstance(norm, str) or norm not in NORMS:
        return {}
    out = {}
    for what, names in (("curve", (CURVE_ATTACK,)), ("audit", AUDIT_ATTACKS)):
        if not attacks_at(names, norm):
            out[what] = f"{what}: off at {norm} ({_OFF_WHY[what]}, {_norms_of(names)} only)"
    return out


def resolve_switches(norm: Any, fields: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`EvalSettings` keywords from `fields`, whose `curve` / `audit` are True (asked for:
    `validate` refuses them at a norm they cannot run at), False (off) or None / absent (the
    default: on where the norm allows, off with a line saying so elsewhere). Returns the
    keywords (`curve` turned into `curve_attack`) and those lines, for the caller to print."""
    fields = dict(fields)
    off = off_at(norm.strip().lower() if isinstance(norm, str) else norm)
    curve, audit = fields.pop("curve", None), fields.get("audit")
    said = [off[k] for k, v in (("curve", curve), ("audit", audit)) if v is None and k in off]
    if "curve_attack" not in fields:
        on = curve if curve is not None else "curve" not in off
        fields["curve_attack"] = CURVE_ATTACK if on else None
    fields["audit"] = audit if audit is not None else "audit" not in off
    return fields, said


def _check_attack_norms(settings: EvalSettings, attacks: Any) -> None:
    """Each attack of `settings` (evaluated, curve, mixed, and the audit's) attacks at
    `settings.norm` (its declared `norm` choices), else one line naming the attack, the norm
    and the norms it supports. Unbounded attacks with their own norm (cw-l2) are exempt."""
    roles = [("attacks", n) for n in settings.attacks]
    roles += [(f, getattr(settings, f)) for f in ("curve_attack", "mixed_attack")
              if getattr(settings, f)]
    roles += [("audit", n) for n in AUDIT_ATTACKS if settings.audit and n in attacks]
    for fname, name in roles:
        factory = attacks.get(name)
        norms = factory.options()["norm"].choices if "norm" in factory.options() else ()
        if settings.norm in norms or not getattr(factory, "bounded", True):
            continue
        able = [a for a in attacks.list() if "norm" in attacks.get(a).options()
                and settings.norm in attacks.get(a).options()["norm"].choices]
        hint = {"attacks": f"attacks at {settings.norm}: {', '.join(able) or '(none)'}",
                "curve_attack": f"drop --curve / curve=True (or pass --no-curve): at "
                                f"{settings.norm} the curve is off by default; fmn among the "
                                "attacks draws it from its distances",
                "audit": "drop --audit / audit=True (or pass --no-audit): the gradient-"
                         f"masking audit runs pgd and square, off by default at "
                         f"{settings.norm}"}
        raise EvalSettingsError(
            f"{fname}: {name} does not attack at norm {settings.norm} (it supports "
            f"{', '.join(norms)}); {hint.get(fname, hint['attacks'])}")
