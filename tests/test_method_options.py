"""Method options are declared once (`OPTIONS`): validation and docs/method-options.md come from
that declaration, for every registered method."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustlab.common.errors import ConfigError
from robustlab.plugins import load_plugins
from robustlab.registry import METHODS
from robustlab.training.methods.options import Option, with_defaults
from robustlab.training.methods.options_doc import markdown

load_plugins()
DOC = Path(__file__).resolve().parents[1] / "docs" / "method-options.md"
ALL = [(m, k) for m in METHODS.list() for k in METHODS.get(m).OPTIONS]


def test_the_options_doc_is_generated_from_the_declarations():
    assert DOC.read_text() == markdown(), (
        "docs/method-options.md is stale: run `make docs`")


@pytest.mark.parametrize(("method", "name"), ALL)
def test_every_default_passes_its_own_check(method, name):
    option = METHODS.get(method).OPTIONS[name]
    assert option.check(name, option.default) == option.default


def _bad_value(option: Option):
    if option.kind == "int":
        return (option.low or 0) - 1
    if option.kind == "float":
        return float("nan")
    if option.kind == "choice":
        return "no-such-choice"
    return 12345 if option.kind in ("str", "table", "bool") else None


@pytest.mark.parametrize(("method", "name"), ALL)
def test_every_option_refuses_a_bad_value_naming_itself(method, name):
    option = METHODS.get(method).OPTIONS[name]
    with pytest.raises(ConfigError, match=f"method_options.{name}: expected"):
        METHODS.create(method, **{name: _bad_value(option)})


def test_option_words_and_variants():
    assert Option(1, "int", "", low=1).describe() == "int >= 1"
    assert Option(0.5, "float", "", low=0.0, high=1.0, also=("adaptive",)).describe() == (
        'float in [0, 1] or "adaptive"')
    assert Option(None, "float", "", low=0.0, low_open=True, allow_none=True).describe() == (
        "float > 0 or null")
    spec = {"k": Option(10, "int", "steps", low=1)}
    assert with_defaults(spec, k=2)["k"].default == 2 and spec["k"].default == 10
    with pytest.raises(ValueError, match="unknown option"):
        with_defaults(spec, q=1)
    with pytest.raises(ValueError, match="Option kind"):
        Option(1, "integer", "")
