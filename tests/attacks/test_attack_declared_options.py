"""Every attack declares its options once (`OPTIONS`, `robustlab.common.options.Option`), and
that one declaration decides everything: the defaults, the check of every value at
construction (`AttackError` naming `ATTACK.OPTION`, the same line from Python and the CLI),
the unknown options (named from the declaration), `inspect.signature` / `help()`, the
instance's attributes and docs/attack-options.md."""

from __future__ import annotations

import inspect
import math
import pydoc
import re
from typing import Any

import pytest
import torch
from torch import nn

from robustlab.attacks import AttackError, create_attack
from robustlab.attacks.base import Attack
from robustlab.attacks.pgd import PGD, CWLinf
from robustlab.cli import main
from robustlab.common.options import Option
from robustlab.plugins import load_plugins
from robustlab.registry import ATTACKS

load_plugins()


def _surrogate() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def _base(name: str) -> dict[str, Any]:
    """The keywords an attack needs beside its options."""
    cls = ATTACKS.get(name)
    l0 = cls.options()["norm"].default == "l0"  # an l0 attack: eps a whole pixel count
    out: dict[str, Any] = {"eps": 1 if l0 else 0.1} if cls.needs_eps else {}
    if name == "transfer":
        out["surrogate"] = _surrogate()
    return out


def bad_values(option: Option) -> list[Any]:
    """Values the option's declaration refuses (several per kind: wrong type, out of range)."""
    if option.kind == "bool":
        return ["false", 0, 1, None]
    if option.kind == "choice":
        return ["nope", 3, None]
    if option.kind == "str":
        return [5, None]
    if option.kind == "ints":
        return ["a", [1], [1, -1], [0.5, 1]]
    out: list[Any] = ["1", True, [1]]
    if option.kind == "float":
        out.append(math.nan)
    else:
        out.append(1.5)
    if option.low is not None:
        out.append(option.low if option.low_open else option.low - 1)
    if option.high is not None and option.high != math.inf:
        out.append(option.high if option.high_open else option.high + 1)
    if not option.allow_none:
        out.append(None)
    return out


CASES = [(name, key, value) for name in ATTACKS.list()
         for key, option in ATTACKS.get(name).options().items()
         for value in bad_values(option)]


@pytest.mark.parametrize(("name", "key", "value"), CASES,
                         ids=[f"{n}.{k}={v!r}" for n, k, v in CASES])
def test_every_option_of_every_attack_refuses_a_bad_value_naming_attack_dot_option(
        name, key, value):
    with pytest.raises(AttackError) as err:
        create_attack(name, **_base(name), **{key: value})
    assert str(err.value).startswith(f"{name}.{key}"), str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(AttackError) as direct:  # the class itself: the same line
        ATTACKS.get(name)(**_base(name), **{key: value})
    assert str(direct.value) == str(err.value)


def test_the_cases_cover_every_kind_and_every_attack():
    assert {ATTACKS.get(n).options()[k].kind for n, k, _ in CASES} >= {
        "int", "float", "bool", "choice", "str", "ints"}
    assert {n for n, _, _ in CASES} == set(ATTACKS.list())


@pytest.mark.parametrize("name", ATTACKS.list())
def test_every_default_passes_its_own_check_and_becomes_the_attribute(name):
    cls = ATTACKS.get(name)
    attack = create_attack(name, **_base(name))
    for key, option in cls.options().items():
        assert option.check(cls.field(key), option.default) == option.default
        if key != "attack":  # transfer.attack: the attribute is the inner attack itself
            assert getattr(attack, key) == option.default, key
    explicit = create_attack(name, **_base(name), **{k: o.default
                                                     for k, o in cls.options().items()})
    assert explicit.describe() == attack.describe()


@pytest.mark.parametrize("name", ATTACKS.list())
def test_an_unknown_option_is_named_with_the_known_ones(name):
    with pytest.raises(AttackError) as err:
        create_attack(name, **_base(name), stepz=3)
    text = str(err.value)
    assert text.startswith(f"{name}: unknown option(s) stepz for attack {name!r}; known: ")
    for key in ["eps", *ATTACKS.get(name).options()]:
        assert re.search(rf"\b{key}\b", text), key
    with pytest.raises(AttackError, match=re.escape(text)):  # the class: the same message
        ATTACKS.get(name)(**_base(name), stepz=3)


def test_transfer_knows_its_inner_attacks_options():
    inner = create_attack("transfer", surrogate=_surrogate(), eps=0.1, attack="square",
                          n_queries=7)
    assert inner.attack.n_queries == 7
    with pytest.raises(AttackError, match=r"^transfer: unknown option\(s\) steps .*n_queries"):
        create_attack("transfer", surrogate=_surrogate(), eps=0.1, attack="square", steps=3)
    with pytest.raises(AttackError, match=r"^pgd\.steps: expected an integer >= 1, got 0$"):
        create_attack("transfer", surrogate=_surrogate(), eps=0.1, steps=0)
    with pytest.raises(AttackError, match=r"^transfer\.attack: expected one of .*got 'transfer'"):
        create_attack("transfer", surrogate=_surrogate(), eps=0.1, attack="transfer")


@pytest.mark.parametrize("value", ["false", "False", 0, 1, None])
def test_random_start_false_as_a_string_is_refused_not_silently_true(value):
    shown = re.escape(repr(value))
    with pytest.raises(AttackError, match=rf"^pgd\.random_start: expected true or false, "
                                          rf"got {shown}$"):
        create_attack("pgd", eps=0.3, random_start=value)
    assert create_attack("pgd", eps=0.3, random_start=False).random_start is False


@pytest.mark.integration  # the CLI's process tuning may look up libc (a subprocess)
def test_python_and_cli_messages_are_the_same_line(capsys, tmp_path):
    with pytest.raises(AttackError) as err:
        create_attack("pgd", eps=0.1, steps=0)
    assert str(err.value) == "pgd.steps: expected an integer >= 1, got 0"
    code = main(["evaluate", "--model", str(tmp_path / "none.py:make"), "--dataset",
                 "synthetic", "--eps", "0.1", "--attacks", "pgd", "--attack-opt",
                 "pgd.steps=0", "--device", "cpu"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and lines == [f"robustlab evaluate: error: {err.value}"]


def test_the_signature_and_help_show_every_option_with_its_default():
    params = inspect.signature(PGD).parameters
    assert params["eps"].default is None
    for key, option in PGD.options().items():
        assert params[key].default == option.default
        assert params[key].kind is inspect.Parameter.KEYWORD_ONLY
    assert params["steps"].default == 10 and params["cpu_kernels"].default is True
    text = pydoc.render_doc(PGD, renderer=pydoc.plaintext)
    assert "steps: 'int' = 10" in text and "random_start: 'bool' = True" in text
    assert "kappa" in inspect.signature(CWLinf).parameters
    assert "loss" not in inspect.signature(CWLinf).parameters


def test_keyword_construction_and_attributes_keep_working():
    a, b = PGD(eps=0.3, steps=7, norm="L2"), create_attack("pgd", eps=0.3, steps=7, norm="L2")
    assert a.steps == b.steps == 7 and a.norm == b.norm == "l2" and a.eps == 0.3
    assert a.describe() == b.describe()
    assert create_attack("cw-linf", eps=0.3, kappa=2).kappa == 2.0
    assert create_attack("patch-local", eps=0.3, location=[1, 2]).location == (1, 2)


def test_a_subclass_extends_its_bases_declaration_and_may_redefault():
    class ShortPGD(PGD):
        OPTIONS = {"steps": Option(3, "int", "iterations", low=1),
                   "extra": Option(0.5, "float", "new", low=0.0, high=1.0)}

    assert list(ShortPGD.options())[:len(Attack.options())] == list(Attack.options())
    assert set(ShortPGD.options()) == set(PGD.options()) | {"extra"}
    attack = ShortPGD(eps=0.1)
    assert (attack.steps, attack.extra, attack.restarts) == (3, 0.5, 1)
    assert inspect.signature(ShortPGD).parameters["steps"].default == 3
    with pytest.raises(AttackError, match=r"^ShortPGD\.extra: expected a finite number in "
                                          r"\[0, 1\], got 2$"):
        ShortPGD(eps=0.1, extra=2)


def test_a_fixed_option_is_refused_and_left_out_of_the_declaration():
    assert "loss" in PGD.options() and "loss" not in CWLinf.options()
    with pytest.raises(AttackError, match=r"^cw-linf\.loss: expected no loss \(cw-linf always "
                                          r"uses 'margin'\), got 'ce'$"):
        create_attack("cw-linf", eps=0.1, loss="ce")
    assert create_attack("cw-linf", eps=0.1).loss == "margin"


def test_cross_option_checks_stay_in_the_attack():
    with pytest.raises(AttackError, match=r"^pgd\.step_size: expected a number > 0 when eps > 0"):
        create_attack("pgd", eps=0.1, step_size=0.0)
    assert create_attack("pgd", eps=0.0, step_size=0.0).step_size == 0.0
    with pytest.raises(AttackError, match=r"^patch-universal\.scale_max: expected a number >= "
                                          r"scale_min \(2\), got 1.5$"):
        create_attack("patch-universal", scale_min=2.0, scale_max=1.5)
    with pytest.raises(AttackError, match=r"^eps: 2 exceeds 1"):  # eps: the threat model
        create_attack("pgd", eps=2.0)
    per_sample = create_attack("pgd", eps=torch.tensor([0.1, 0.2]))
    assert per_sample.eps.tolist() == pytest.approx([0.1, 0.2])


def test_an_option_only_init_knows_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"Legacy\.__init__ takes steps, which Legacy\.OPTIONS "
                                        r"does not declare"):
        class Legacy(Attack):
            def __init__(self, *, eps=None, steps=10, **common):
                super().__init__(eps=eps, **common)
