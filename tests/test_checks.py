"""The one set of value checks (robustlab.common.checks) every layer raises its errors through."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from robustlab.attacks import AttackError, create
from robustlab.common.checks import check_bool, check_choice, check_int, check_number
from robustlab.common.errors import ConfigError
from robustlab.data.errors import DataError
from robustlab.defenses.base import DefenseError
from robustlab.evaluation.settings import EvalSettings, EvalSettingsError

SRC = Path(__file__).resolve().parents[1] / "src" / "robustlab"


class Custom(ValueError):
    pass


@given(st.integers(-1000, 1000), st.integers(-10, 10), st.integers(0, 20))
def test_check_int_accepts_exactly_the_integers_in_range(value, low, width):
    high = low + width
    if low <= value <= high:
        assert check_int("f", value, low, high) == value
    else:
        with pytest.raises(ValueError, match=rf"^f: expected an integer in \[{low}, {high}\], "
                                             rf"got {value}$"):
            check_int("f", value, low, high)


@pytest.mark.parametrize("bad", [True, 1.0, "1", None, [1]])
def test_check_int_rejects_non_integers_with_the_callers_error(bad):
    with pytest.raises(Custom, match=r"^n: expected an integer >= 1, got "):
        check_int("n", bad, 1, error=Custom)


def test_check_int_options():
    assert check_int("n", None, 1, allow_none=True) is None
    assert check_int("n", np.int64(3), 1) == 3 and type(check_int("n", np.int64(3), 1)) is int
    assert check_int("seed", -5) == -5
    with pytest.raises(ValueError, match=r"^n: expected an integer >= 1 or null, got 0$"):
        check_int("n", 0, 1, allow_none=True)


@pytest.mark.parametrize(("kwargs", "value", "message"), [
    ({"low": 0.0}, -0.5, r"^x: expected a finite number >= 0, got -0.5$"),
    ({"low": 0.0, "low_open": True}, 0, r"^x: expected a finite number > 0, got 0$"),
    ({"low": 0.0, "high": 1.0}, 1.5, r"^x: expected a finite number in \[0, 1\], got 1.5$"),
    ({"low": 0.0, "high": 1.0, "low_open": True}, 0.0,
     r"^x: expected a finite number > 0 and <= 1, got 0.0$"),
    ({"low": 0.0}, math.nan, r"^x: expected a finite number >= 0, got nan$"),
    ({"low": 0.0}, math.inf, r"^x: expected a finite number >= 0, got inf$"),
    ({"low": 0.0}, True, r"^x: expected a finite number >= 0, got True$"),
    ({"low": 0.0}, 10**400, r"^x: expected a finite number >= 0, got 1000"),
    ({"low": 0.0, "expected": "a budget in pixels"}, "a",
     r"^x: expected a budget in pixels, got 'a'$"),
])
def test_check_number_messages(kwargs, value, message):
    with pytest.raises(ValueError, match=message):
        check_number("x", value, **kwargs)


def test_check_number_returns_a_float():
    assert check_number("x", 2, 0.0) == 2.0 and isinstance(check_number("x", 2, 0.0), float)
    assert check_number("x", None, allow_none=True) is None


def test_check_bool_and_choice():
    assert check_bool("b", False) is False
    with pytest.raises(ValueError, match=r"^b: expected true or false, got 1$"):
        check_bool("b", 1)
    assert check_choice("c", "linf", ("linf", "l2")) == "linf"
    with pytest.raises(Custom, match=r"^c: expected one of linf, l2, got 'Linf'$"):
        check_choice("c", "Linf", ("linf", "l2"), error=Custom)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: create("pgd", eps=0.3, steps=0), AttackError,
     "steps: expected an integer >= 1, got 0"),
    (lambda: create("pgd", eps=0.3, steps=10, seed=1.5), AttackError,
     "seed: expected an integer, got 1.5"),
    (lambda: EvalSettings(n=0).validate(), EvalSettingsError,
     "n: expected an integer >= 1 or null, got 0"),
])
def test_every_layer_speaks_the_same_format(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_layers_raise_their_own_error_classes():
    from robustlab.data.batches import iterate_batches
    from robustlab.defenses.base import check_int as defense_int
    from robustlab.runs.config import TrainConfig
    from robustlab.training.methods.options import check_int as option_int

    with pytest.raises(DefenseError, match=r"^bits: expected an integer in \[1, 16\], got 0$"):
        defense_int("bits", 0, 1, 16)
    with pytest.raises(ConfigError, match=r"^method_options.k: expected an integer >= 1, got 0$"):
        option_int("k", 0, 1)
    with pytest.raises(ConfigError, match=r"^epochs: expected an integer in \[1, 100000\], got 0$"):
        TrainConfig(dataset="mnist", model="lenet5", method="standard", epochs=0).validate()
    with pytest.raises(DataError, match=r"^batch_size: expected an integer >= 1, got 0$"):
        next(iterate_batches(None, 0))


def test_no_hand_written_type_checks_outside_common_checks():
    """The bool-is-not-an-int test is written once: any copy elsewhere would drift (a copy that
    forgets the bool case accepts `steps=True`)."""
    pattern = re.compile(r"isinstance\([\w.]+, bool\) or not isinstance")
    offenders = [f"{p.relative_to(SRC)}:{n}" for p in SRC.rglob("*.py")
                 if p.name != "checks.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
