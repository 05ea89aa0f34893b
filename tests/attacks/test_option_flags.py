"""A flag is True or False: strings and numbers are refused, never coerced with bool()
(`random_start="false"` used to keep the random start silently)."""

from __future__ import annotations

import pytest

from robustlab.attacks import AttackError, create_attack


@pytest.mark.parametrize("name, option", [
    ("pgd", "random_start"), ("pgd", "stop_on_success"), ("mifgsm", "stop_on_success"),
    ("cw-l2", "abort_early"), ("fgsm", "adaptive"), ("cw-linf", "random_start"),
])
@pytest.mark.parametrize("value", ["false", 0, 1, None])
def test_flag_options_accept_only_booleans(name, option, value):
    with pytest.raises(AttackError, match=f"{option}: expected true or false"):
        create_attack(name, eps=0.3, **{option: value})
    assert getattr(create_attack(name, eps=0.3, **{option: False}), option) is False


@pytest.mark.parametrize("kappa", [True, "1", float("nan"), 0, -1.0])
def test_cw_linf_kappa_must_be_a_positive_number(kappa):
    with pytest.raises(AttackError, match="kappa: expected a number > 0 or inf"):
        create_attack("cw-linf", eps=0.3, kappa=kappa)
    assert create_attack("cw-linf", eps=0.3, kappa=2).kappa == 2.0
    assert create_attack("cw-linf", eps=0.3).kappa == float("inf")
