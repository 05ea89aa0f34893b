"""Experiment presets as data: which datasets, budgets, methods, seeds and sizes to run.

A preset is a frozen `Preset`; `reproduce --preset NAME` expands it into training runs and
evaluations (`robustlab.experiments.plan`). Nothing here computes anything.

Every preset has two budgets per dataset: the paper's eps = 0.03 ("paper") and the
literature's standard budget for that dataset ("standard": MNIST 0.3, Fashion-MNIST 0.1,
CIFAR-10 8/255, ImageNet 4/255), all Linf in pixel units of [0, 1] images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from robustlab.common.vocabulary import CURVE_FACTORS, TRANSFER_ATTACKS

PAPER_EPS = 0.03
# The protocols a preset can train under, and the recipe (`robustlab.training.recipes`) each
# one applies: the paper's hyper-parameters for every method, or each method's working recipe.
PROTOCOL_RECIPES = {"paper": "paper", "recipe": "auto"}
STANDARD_EPS = {"mnist": 0.3, "fashion-mnist": 0.1, "cifar10": 8 / 255, "imagefolder": 4 / 255}

# What each training method is in the paper's terms (section 4.5 / 4.6).
METHOD_ROLES = {
    "standard": "baseline",
    "pgd-at": "adversarial training", "fgsm-rs": "adversarial training",
    "free-at": "adversarial training", "n-fgsm": "adversarial training",
    "trades": "robust optimisation", "mart": "robust optimisation",
    "gradient-reg": "robust optimisation", "lipschitz": "robust optimisation",
    "hybrid": "hybrid", "hybrid-pgd": "hybrid", "hybrid-fgsm": "hybrid",
    "hybrid-fixed-eps": "ablation", "hybrid-fixed-alpha": "ablation", "mix": "ablation",
}


@dataclass(frozen=True)
class ThreatModelPlan:
    """A further threat model at which every run of a dataset is evaluated, beside its
    budgets (which are in the dataset's training `norm`): `label` names it (the eval files,
    the report's section), `eps` is in `norm`'s units (pixels at l0), `attacks` () are the
    norm's defaults (`NORM_DEFAULT_ATTACKS` at l1 / l0, the `EvalPlan`'s elsewhere), and
    `attack_options` add to the EvalPlan's. The curve and the audit run where the norm allows
    (`evaluation.settings.resolve_switches`)."""

    label: str
    norm: str
    eps: float
    attacks: tuple[str, ...] = ()
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset/model pair and its budgets `((label, eps), ...)` under `norm` (the runs
    train and are evaluated at them), and `threat_models` every run is evaluated at too."""

    dataset: str
    model: str
    budgets: tuple[tuple[str, float], ...]
    norm: str = "linf"
    threat_models: tuple[ThreatModelPlan, ...] = ()


@dataclass(frozen=True)
class MethodPlan:
    method: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return METHOD_ROLES.get(self.method, "other")


@dataclass(frozen=True)
class EvalPlan:
    """Evaluation settings shared by every run (eps comes from the budget)."""

    attacks: tuple[str, ...] = ("fgsm", "pgd", "cw-linf", "autoattack")
    n: int | None = 1000
    batch_size: int = 500
    curve_factors: tuple[float, ...] = CURVE_FACTORS
    curve_n: int | None = 500
    audit: bool = True
    audit_n: int | None = 200
    audit_square_queries: int = 1000
    attack_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyPlan:
    """The optional studies beyond the paper (its section 6.4; issue #18), run by `reproduce`
    after every evaluation, each reported in its own section (all off by default).

    - `transfer`: per dataset, protocol and budget, the transfer matrix of the runs evaluated
      there (seed 0, runs that learned): every source x target pair under `transfer_attacks`
      crafted with `transfer_steps` steps on the first `transfer_n` test images, plus a
      leave-one-out ensemble source (experiments/transfer_study.py).
    - `certify`: per dataset, one extra run trained with Gaussian noise (`gaussian-aug`,
      sigma `certify_sigma`, the protocol's recipe) and certified by randomized smoothing on
      the first `certify_images` test images with `certify_n` samples (certification/study.py).
    - `patch`: every run evaluated at a budget label of `patch_budgets` is also evaluated
      under the patch attacks (`patch_attacks`, a `patch_size` square window, unrestricted
      values: eps 1) on the first `patch_n` test images, as its own budget label "patch".
    """

    transfer: bool = False
    transfer_attacks: tuple[str, ...] = TRANSFER_ATTACKS
    transfer_steps: int = 20
    transfer_n: int = 500
    certify: bool = False
    certify_sigma: float = 0.25
    certify_images: int = 200
    certify_n: int = 10000
    patch: bool = False
    patch_attacks: tuple[str, ...] = ("patch-local", "patch-universal")
    patch_size: int = 6
    patch_n: int = 200
    patch_budgets: tuple[str, ...] = ("standard",)

    @property
    def any(self) -> bool:
        return self.transfer or self.certify or self.patch


@dataclass(frozen=True)
class Preset:
    """Everything `reproduce` runs. `train_size` / `val_size` None = the dataset's defaults;
    `headline` is the dataset of Figure 2 and the claims check. `protocols` (keys of
    `PROTOCOL_RECIPES`): `batch_size` and `lr` are the `paper` protocol's; the `recipe`
    protocol takes them from the dataset's recipe. `protocol_budgets` names the budget labels
    a protocol trains at (absent: all of the dataset's budgets). `studies`: the optional
    studies beyond the paper (`StudyPlan`)."""

    name: str
    description: str
    datasets: tuple[DatasetPlan, ...]
    methods: tuple[MethodPlan, ...]
    seeds: tuple[int, ...] = (0,)
    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.01
    train_size: int | None = None
    val_size: int | None = None
    eval: EvalPlan = field(default_factory=EvalPlan)
    headline: str = "mnist"
    budget_note: str = ""
    protocols: tuple[str, ...] = ("paper",)
    protocol_budgets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    studies: StudyPlan = field(default_factory=StudyPlan)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def budgets_of(self, ds: DatasetPlan, protocol: str) -> tuple[tuple[str, float], ...]:
        labels = self.protocol_budgets.get(protocol)
        return tuple(b for b in ds.budgets if labels is None or b[0] in labels)

    def replace(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, **changes)


def _budgets(dataset: str) -> tuple[tuple[str, float], ...]:
    return (("paper", PAPER_EPS), ("standard", STANDARD_EPS[dataset]))


def _methods(*names: str, **options: dict[str, Any]) -> tuple[MethodPlan, ...]:
    return tuple(MethodPlan(n, dict(options.get(n.replace("-", "_"), {}))) for n in names)


ALL_METHODS = ("standard", "pgd-at", "fgsm-rs", "free-at", "trades", "mart", "gradient-reg",
               "lipschitz", "hybrid", "hybrid-fgsm", "mix", "hybrid-fixed-eps",
               "hybrid-fixed-alpha")

# Cheaper AutoAttack counts for CPU presets (labelled in every eval file's settings).
_AA_CPU = {"autoattack": {"steps": 20, "n_target_classes": 3, "n_queries": 500}}
_AA_TINY = {"autoattack": {"steps": 5, "n_target_classes": 2, "n_queries": 100}}

# the threat-models preset's further threat models of MNIST (L2 2.0 and L1 10: the
# literature's MNIST budgets, Croce & Hein 2021), with attacks that converge there on a
# Linf-trained LeNet-5 (PGD-10 at L2 does not: the audit's more_steps check flags it)
_AA_MID = {"autoattack": {"steps": 50, "n_target_classes": 3, "n_queries": 500}}
_MORE_THREAT_MODELS = (
    ThreatModelPlan("l2", "l2", 2.0, ("fgsm", "pgd", "autoattack"),
                    attack_options={"pgd": {"steps": 50}, **_AA_MID}),
    ThreatModelPlan("l1", "l1", 10.0, attack_options=_AA_MID),
)

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        description="CI check of the whole pipeline: tiny data, 1 epoch, 3 methods, 100 "
                    "test images (1-2 minutes on 2 idle CPU cores).",
        datasets=(DatasetPlan("mnist", "lenet5", _budgets("mnist")),),
        methods=_methods("standard", "pgd-at", "hybrid",
                         pgd_at={"steps": 3}, hybrid={"val_samples": 100, "val_steps": 3}),
        seeds=(0,), epochs=1, batch_size=64, lr=0.05, train_size=2000, val_size=200,
        protocols=("paper", "recipe"),
        protocol_budgets={"paper": ("paper",), "recipe": ("standard",)},
        eval=EvalPlan(attacks=("fgsm", "pgd", "autoattack"), n=100, batch_size=100,
                      curve_factors=(0.0, 1.0, 2.0), curve_n=50, audit_n=50,
                      audit_square_queries=50,
                      attack_options={"pgd": {"steps": 5}, **_AA_TINY}),
        budget_note="train_size=2000, 1 epoch (paper protocol: batch 64, lr 0.05; the "
                    "recipe protocol at eps 0.3), PGD-5 on 100 test images: checks the "
                    "pipeline, not the paper's numbers",
    ),
    "quick": Preset(
        name="quick",
        description="The README's main job: MNIST / LeNet-5 at the standard budget eps 0.3, "
                    "every method with its working recipe (best-recipe protocol: one-cycle "
                    "SGD, the same budget warm-up for all): standard, PGD-AT, TRADES, the "
                    "hybrid (PGD-2 copies) and the hybrid with the paper's FGSM copies, one "
                    "seed, evaluated on 1,000 test images (about 15 minutes on 2 CPU cores).",
        datasets=(DatasetPlan("mnist", "lenet5", (("standard", STANDARD_EPS["mnist"]),)),),
        methods=_methods("standard", "pgd-at", "trades", "hybrid", "hybrid-fgsm",
                         pgd_at={"steps": 5}, trades={"steps": 5},
                         hybrid={"steps": 5, "val_samples": 500, "val_steps": 5},
                         hybrid_fgsm={"val_samples": 500, "val_steps": 5}),
        seeds=(0,), epochs=5, protocols=("recipe",),
        eval=EvalPlan(attacks=("fgsm", "pgd", "cw-linf", "autoattack"), n=1000,
                      curve_n=300, audit_n=200, audit_square_queries=500,
                      attack_options=_AA_CPU),
        budget_note="full training set (55,000), 5 epochs, PGD-5 during training, 1,000 test "
                    "images, AutoAttack with 20 iterations / 3 target classes / 500 Square "
                    "queries; the paper's own budget (eps 0.03) and protocol are in paper-cpu",
    ),
    "paper-cpu": Preset(
        name="paper-cpu",
        description="MNIST and Fashion-MNIST with LeNet-5, every method, full training sets: "
                    "the paper's protocol at the paper's budget (eps 0.03) and every method's "
                    "working recipe at the standard budget (MNIST 0.3, Fashion-MNIST 0.1); one "
                    "seed, sized for about 2 hours on 2 CPU cores (pass --model smallcnn for "
                    "SmallCNN).",
        datasets=(DatasetPlan("mnist", "lenet5", _budgets("mnist")),
                  DatasetPlan("fashion-mnist", "lenet5", _budgets("fashion-mnist"))),
        methods=_methods(*ALL_METHODS, pgd_at={"steps": 5}, trades={"steps": 5},
                         mart={"steps": 5},
                         hybrid={"steps": 5, "val_samples": 500, "val_steps": 5},
                         hybrid_fgsm={"val_samples": 500, "val_steps": 5},
                         hybrid_fixed_eps={"steps": 5, "val_samples": 500, "val_steps": 5},
                         hybrid_fixed_alpha={"steps": 5, "val_samples": 500, "val_steps": 5},
                         mix={"steps": 5, "val_samples": 500, "val_steps": 5},
                         fgsm_rs={"val_samples": 500, "val_steps": 5}),
        seeds=(0,), epochs=4, protocols=("paper", "recipe"),
        protocol_budgets={"paper": ("paper",), "recipe": ("standard",)},
        eval=EvalPlan(attacks=("fgsm", "pgd", "cw-linf", "autoattack"), n=1000,
                      curve_n=100, audit_n=50, audit_square_queries=300,
                      attack_options=_AA_CPU),
        budget_note="full training sets, 4 epochs, PGD-5 during training, one seed (the "
                    "2-hour budget does not hold three), 1,000 test images, AutoAttack with "
                    "20 iterations / 3 target classes / 500 Square queries; the eps curve on "
                    "100 and the audit on 50 of those images; studies: transfer on 500, "
                    "patches on 200, certification on 200 test images",
        studies=StudyPlan(transfer=True, certify=True, patch=True),
    ),
    "threat-models": Preset(
        name="threat-models",
        description="One model set, several threat models: MNIST / LeNet-5 trained at Linf "
                    "eps 0.3 (standard and PGD-AT, each method's working recipe) and every "
                    "run evaluated at Linf eps 0.3, L2 eps 2 and L1 eps 10.",
        datasets=(DatasetPlan("mnist", "lenet5", (("standard", STANDARD_EPS["mnist"]),),
                              threat_models=_MORE_THREAT_MODELS),),
        methods=_methods("standard", "pgd-at", pgd_at={"steps": 5}),
        seeds=(0,), epochs=3, protocols=("recipe",),
        eval=EvalPlan(attacks=("fgsm", "pgd", "autoattack"), n=200, batch_size=200,
                      curve_factors=(0.0, 0.5, 1.0, 1.5), curve_n=100, audit_n=50,
                      audit_square_queries=100,
                      attack_options={"pgd": {"steps": 10}, **_AA_TINY}),
        budget_note="full training set, 3 epochs, PGD-5 in training (recipe protocol at "
                    "Linf eps 0.3), 200 test images; Linf: PGD-10, AutoAttack with 5 "
                    "iterations / 2 target classes / 100 Square queries; L2: PGD-50, L1: "
                    "APGD-CE-100, and AutoAttack with 50 iterations / 3 target classes / 500 "
                    "Square queries at both; the eps curve and the audit at Linf and L2 only "
                    "(their PGD and Square have no L1)",
    ),
    "paper": Preset(
        name="paper",
        description="The paper's full protocol for a GPU: MNIST/LeNet-5, CIFAR-10/ResNet-18, "
                    "ImageNet-subset/EfficientNet-B0 (an `imagefolder` tree under --data-dir), "
                    "every method, 3 seeds, 50 epochs, lr 0.01, batch 128.",
        datasets=(DatasetPlan("mnist", "lenet5", _budgets("mnist")),
                  DatasetPlan("cifar10", "resnet18", _budgets("cifar10")),
                  DatasetPlan("imagefolder", "efficientnet_b0", _budgets("imagefolder"))),
        methods=_methods(*ALL_METHODS),
        seeds=(0, 1, 2), epochs=50, batch_size=128, lr=0.01,
        eval=EvalPlan(attacks=("fgsm", "pgd", "cw-l2", "autoattack"), n=10000,
                      batch_size=500, curve_n=1000, audit_n=500),
        headline="cifar10",
        budget_note="full training sets, 50 epochs, full test sets, standard AutoAttack",
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        from robustlab.common.errors import ConfigError

        raise ConfigError(f"--preset: unknown preset {name!r}; available: "
                          f"{', '.join(PRESETS)}")
    return PRESETS[name]
