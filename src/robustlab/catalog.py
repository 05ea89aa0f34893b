"""Every registered name, by kind (after `load_plugins()` has filled the registries), and the
zoo's pretrained models."""

from __future__ import annotations


def all_names() -> dict[str, list[str]]:
    from robustlab.plugins import load_plugins
    from robustlab.registry import ATTACKS, DATASETS, DEFENSES, METHODS, MODELS
    from robustlab.training.recipes import RECIPES

    load_plugins()
    return {"datasets": DATASETS.list(), "models": MODELS.list(), "methods": METHODS.list(),
            "attacks": ATTACKS.list(), "defenses": DEFENSES.list(), "recipes": list(RECIPES),
            "pretrained": pretrained_names()}


def pretrained_names() -> list[str]:
    """The zoo's models (`robustlab.zoo`: `$ROBUSTLAB_ZOO`, else the ones robustlab ships)."""
    from robustlab.zoo import list_pretrained

    return list_pretrained()
