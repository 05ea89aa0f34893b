"""docs/attack-options.md is generated from the attacks themselves and stays current."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch

from robustlab.attacks import AttackError, create
from robustlab.attacks.options_doc import _options, markdown
from robustlab.plugins import load_plugins
from robustlab.registry import ATTACKS

load_plugins()
DOC = Path(__file__).resolve().parents[2] / "docs" / "attack-options.md"


def test_the_attack_options_doc_is_current():
    assert DOC.read_text() == markdown(), (
        "docs/attack-options.md is stale: run `make docs`")


@pytest.mark.parametrize("name", ATTACKS.list())
def test_every_documented_option_and_default_is_accepted(name):
    """Each option the table lists, passed explicitly at its documented default, builds the
    attack (the docs name no option the constructor would reject)."""
    cls = ATTACKS.get(name)
    options = {p.name: p.default for p in _options(cls)
               if p.default is not inspect.Parameter.empty and p.name not in ("eps", "model")}
    if "surrogate" in options:  # documented as required (no usable default)
        options["surrogate"] = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    eps = 1 if options.get("norm") == "l0" else 0.1  # l0: a whole number of pixels
    attack = create(name, eps=eps if cls.needs_eps else None, **options)
    assert attack.name == name
    for key in ("steps", "restarts"):
        if key in options:
            with pytest.raises(AttackError, match=f"{key}: expected an integer >= 1, got 0"):
                create(name, eps=eps, **{**options, key: 0})
