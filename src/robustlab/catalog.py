"""Every registered name, by kind (imports each layer so its registry is filled)."""

from __future__ import annotations


def all_names() -> dict[str, list[str]]:
    import robustlab.attacks  # noqa: F401
    import robustlab.data  # noqa: F401
    import robustlab.defenses  # noqa: F401
    import robustlab.models  # noqa: F401
    import robustlab.training.methods  # noqa: F401
    from robustlab.registry import ATTACKS, DATASETS, DEFENSES, METHODS, MODELS
    from robustlab.training.recipes import RECIPES

    return {"datasets": DATASETS.list(), "models": MODELS.list(), "methods": METHODS.list(),
            "attacks": ATTACKS.list(), "defenses": DEFENSES.list(), "recipes": list(RECIPES)}
