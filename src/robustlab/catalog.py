"""Every registered name, by kind (after `load_plugins()` has filled the registries)."""

from __future__ import annotations


def all_names() -> dict[str, list[str]]:
    from robustlab.plugins import load_plugins
    from robustlab.registry import ATTACKS, DATASETS, DEFENSES, METHODS, MODELS
    from robustlab.training.recipes import RECIPES

    load_plugins()
    return {"datasets": DATASETS.list(), "models": MODELS.list(), "methods": METHODS.list(),
            "attacks": ATTACKS.list(), "defenses": DEFENSES.list(), "recipes": list(RECIPES)}
