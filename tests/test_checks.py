"""The one set of value checks (robustlab.common.checks) every layer raises its errors through."""

from __future__ import annotations

import ast
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
     "pgd.steps: expected an integer >= 1, got 0"),
    (lambda: create("pgd", eps=0.3, steps=10, seed=1.5), AttackError,
     "pgd.seed: expected an integer in [0, 9223372036854775807], got 1.5"),
    (lambda: EvalSettings(eps=0.3, n=0).validate(), EvalSettingsError,
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
    with pytest.raises(ConfigError,
                       match=r"^method_options.steps: expected an integer >= 1, got 0$"):
        option_int("steps", 0, 1)
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


def _option_names() -> set[str]:
    """Every option name a registered component declares (attacks: merged along the MRO)."""
    from robustlab.plugins import load_plugins
    from robustlab.registry import ATTACKS, DATASETS, DEFENSES, METHODS, MODELS

    load_plugins()
    names: set[str] = set()
    for registry in (ATTACKS, METHODS, DEFENSES, DATASETS, MODELS):
        for name in registry.list():
            factory = registry.get(name)
            declared = factory.options() if registry is ATTACKS else getattr(
                factory, "OPTIONS", None)
            names |= set(declared or {})
    return names


def _named(node: ast.expr) -> str | None:
    """The option-like name `node` reads: `x`, `self.x`, `opts["x"]`, `opts.get("x")`."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    key = node.slice if isinstance(node, ast.Subscript) else (
        node.args[0] if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get" and node.args else None)
    return key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None


def _is_bool_check(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """`isinstance(v, bool)` used as a hand-written check: combined with another test
    (`isinstance(v, int) and not isinstance(v, bool)`) or deciding a `raise`."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "isinstance" and len(node.args) == 2
            and isinstance(node.args[1], ast.Name) and node.args[1].id == "bool"):
        return False
    up = parents.get(node)
    while isinstance(up, ast.UnaryOp):
        up = parents.get(up)
    if isinstance(up, ast.BoolOp):
        return True
    return isinstance(up, ast.If) and any(isinstance(s, ast.Raise) for s in up.body)


# Hand-written bool checks in modules other sessions own, to move to common/checks.py
# (`is_integer` / `is_real` / `check_*`); the list may only shrink.
KNOWN_BOOL_CHECKS: set[str] = set()


def test_no_option_is_coerced_with_bool_and_no_bool_check_is_hand_written():
    """`bool(random_start)` turned the string "false" into True (the random start stayed on);
    `isinstance(v, bool)` checks written by hand drift from common/checks.py. An ast scan of
    src/robustlab: no `bool(...)` of a declared option's value, no hand-written bool check
    outside common/checks.py."""
    options = _option_names()
    assert {"random_start", "stop_on_success", "abort_early", "adaptive"} <= options
    coerced, checks = [], set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        where = str(path.relative_to(SRC))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "bool" and len(node.args) == 1
                    and _named(node.args[0]) in options):
                coerced.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
            if where != "common/checks.py" and _is_bool_check(node, parents):
                checks.add(where)
    assert coerced == []
    assert checks <= KNOWN_BOOL_CHECKS, sorted(checks - KNOWN_BOOL_CHECKS)


@pytest.mark.parametrize("source, found", [
    ("def f(random_start):\n    return bool(random_start)\n", True),
    ("def f(self):\n    return bool(self.stop_on_success)\n", True),
    ("def f(o):\n    return bool(o.get('adaptive'))\n", True),
    ("def f(t):\n    return bool(t.any())\n", False),
])
def test_the_bool_scan_finds_a_coerced_option(source, found):
    hits = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name) and n.func.id == "bool"
            and _named(n.args[0]) in {"random_start", "stop_on_success", "adaptive"}]
    assert bool(hits) is found


@pytest.mark.parametrize("source, found", [
    ("if isinstance(v, int) and not isinstance(v, bool):\n    pass\n", True),
    ("if isinstance(v, bool):\n    raise ValueError(v)\n", True),
    ("x = 'a' if isinstance(v, bool) else 'b'\n", False),
])
def test_the_bool_scan_finds_a_hand_written_check(source, found):
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    assert any(_is_bool_check(n, parents) for n in ast.walk(tree)) is found


def _is_range_check(node: ast.AST) -> bool:
    """`if not LOW <= value <= HIGH: raise ...` (or `<`): a number's range checked by hand,
    with literal bounds, deciding a `raise` -- what `check_int` / `check_number` do."""
    if not (isinstance(node, ast.If) and any(isinstance(s, ast.Raise) for s in node.body)):
        return False
    for sub in ast.walk(node.test):
        if (isinstance(sub, ast.Compare) and len(sub.ops) == 2
                and all(isinstance(op, (ast.Lt, ast.LtE)) for op in sub.ops)
                and isinstance(sub.left, ast.Constant)
                and isinstance(sub.left.value, (int, float))):
            return True
    return False


# Range checks that are not a user's value: a math function's precondition on its own
# arguments (clopper_pearson_lower's k and n).
RANGE_CHECKS_ALLOWED = {"certification/bounds.py"}


def test_no_range_check_is_hand_written():
    """A number's range is checked by `check_int` / `check_number` (one message format, a
    bool never a number), not by `if not 0 <= x < 1: raise` written again in each layer."""
    found = set()
    for path in SRC.rglob("*.py"):
        where = str(path.relative_to(SRC))
        if where == "common/checks.py":
            continue
        found |= {f"{where}:{n.lineno}" for n in ast.walk(ast.parse(path.read_text()))
                  if _is_range_check(n) and where not in RANGE_CHECKS_ALLOWED}
    assert found == set(), sorted(found)


@pytest.mark.parametrize("source, found", [
    ("def f(r):\n    if not 0.0 <= r < 1.0:\n        raise ValueError(r)\n", True),
    ("def f(n):\n    if n < 0 or not 0 <= n <= 9:\n        raise ValueError(n)\n", True),
    ("def f(r):\n    return check_number('r', r, 0.0, 1.0)\n", False),
    ("def f(lo, hi):\n    if not (lo <= hi):\n        raise ValueError(lo)\n", False),
])
def test_the_range_check_scan_finds_hand_written_checks(source, found):
    assert any(_is_range_check(n) for n in ast.walk(ast.parse(source))) is found
