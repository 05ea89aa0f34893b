"""What every attack does with unusual inputs: other float dtypes work, everything else raises
`AttackError` (a ValueError) naming the argument, before any compute (issue "Reliability" 14).

A tiny 1-conv model on `[N, 1, 8, 8]` images keeps the whole file well under a minute.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from attack_configs import build, supported_norms
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

from robustlab.attacks import AttackError, create_attack, list_attacks
from robustlab.attacks.norms import lp_norm
from robustlab.registry import ATTACKS

ALL = list_attacks()
K = 5  # classes of the tiny model


def _tiny(dtype: torch.dtype = torch.float32) -> nn.Module:
    """conv2@3x3 -> linear, 5 classes on `[N, 1, 8, 8]`, seeded."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, K)).to(dtype)


MODEL = _tiny()


def _batch(n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, K, (n,), generator=g)


NORMS_OF = {name: set(supported_norms(name)) for name in ALL}


def _field(err: Exception) -> str:
    """The argument an error message names (`"eps: ..."` -> `"eps"`; an option is named as
    `ATTACK.OPTION`: `"pgd.norm: ..."` -> `"norm"`)."""
    return str(err).split(":", 1)[0].rsplit(".", 1)[-1]


def _assert_valid_output(out, x, eps, norm, bounded) -> None:
    """Shape / dtype / device of `x`, values in [0, 1], inside the eps-ball (float64 check)."""
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    o, x64 = out.double(), x.double()
    if not x.shape[0]:
        return
    assert bool(torch.isfinite(o).all()) and float(o.min()) >= 0 and float(o.max()) <= 1
    if bounded:
        dist = lp_norm(o - x64, norm)
        assert bool((dist <= eps * (1 + 1e-6) + 1e-7).all()), float(dist.max())


# ------------------------------------------------------------------------ 1. dtypes of x
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["pgd", "fgsm", "square", "cw-l2", "apgd-ce"])
def test_other_float_dtypes_work(name, dtype):
    x, y = _batch()
    x = x.to(dtype)
    norm = "l2" if name == "cw-l2" else "linf"
    attack = build(name, eps=8 / 255, norm=norm)
    out = attack(MODEL, x, y)
    _assert_valid_output(out, x, 8 / 255, norm, attack.bounded)
    if attack.bounded:  # eps = 0 still returns x bit-exactly in its own dtype
        assert torch.equal(build(name, eps=0.0, norm=norm)(MODEL, x, y), x)


def test_float64_model_works_with_float32_and_float64_inputs():
    model = _tiny(torch.float64)
    x, y = _batch()
    for name in ("pgd", "cw-l2", "fab"):
        norm = "l2" if name == "cw-l2" else "linf"
        attack = build(name, eps=0.1, norm=norm)
        for xx in (x, x.double()):
            _assert_valid_output(attack(model, xx, y), xx, 0.1, norm, attack.bounded)


def test_low_precision_model_raises_naming_model():
    x, y = _batch()
    with pytest.raises(AttackError, match=r"^model: .*bfloat16.*float32"):
        build("pgd", eps=0.1, norm="linf")(_tiny(torch.bfloat16), x.bfloat16(), y)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda x: (x * 255).byte(), r"^x: images must be float tensors in \[0, 1\].*uint8"),
        (lambda x: (x * 255).long(), r"^x: .*float.*int64"),
        (lambda x: x.numpy(), r"^x: .*numpy.*torch\.from_numpy\(x\)\.float\(\)"),
        (lambda x: x.tolist(), r"^x: .*list"),
        (lambda x: x.to(torch.complex64), r"^x: .*complex64"),
    ],
)
def test_non_float_images_raise_naming_x(make, match):
    x, y = _batch()
    with pytest.raises(AttackError, match=match):
        build("pgd", eps=0.1, norm="linf")(MODEL, make(x), y)


# ------------------------------------------------------------------------------ labels y
@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_any_integer_label_dtype_works(dtype):
    x, y = _batch()
    attack = build("pgd", eps=0.1, norm="linf")
    assert torch.equal(attack(MODEL, x, y.to(dtype)), attack(MODEL, x, y))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda y: y.float(), r"^y: expected integer .*shape \[4\].*float32"),
        (lambda y: y.bool(), r"^y: expected integer .*bool"),
        (lambda y: y[:, None], r"^y: expected integer .*shape \[4\].*\(4, 1\)"),
        (lambda y: y[:3], r"^y: expected integer .*shape \[4\].*\(3,\)"),
        (lambda y: y.numpy(), r"^y: .*numpy.*torch\.from_numpy\(y\)\.long\(\)"),
        (lambda y: y + K, r"^y: labels must be < the number of classes 5"),
        (lambda y: y - K, r"^y: labels must be >= 0"),
    ],
)
def test_bad_labels_raise_naming_y(make, match):
    x, y = _batch()
    with pytest.raises(AttackError, match=match):
        build("pgd", eps=0.1, norm="linf")(MODEL, x, make(y))


# ---------------------------------------------------------------------- 2. model outputs
class _Output(nn.Module):
    """Wraps MODEL and returns `fn(logits, x)`."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.inner, self.fn, self.calls = _tiny(), fn, 0

    def forward(self, x):
        self.calls += 1
        return self.fn(self.inner(x), x)


@pytest.mark.parametrize(
    ("fn", "what"),
    [
        (lambda z, x: (z, x), "a tuple of 2"),
        (lambda z, x: {"logits": z}, "a dict with keys"),
        (lambda z, x: None, "a NoneType"),
        (lambda z, x: z[:, :, None], "shape (1, 5, 1)"),
        (lambda z, x: z.argmax(1, keepdim=True), "int64"),
    ],
)
@pytest.mark.parametrize("name", ["pgd", "square", "autoattack"])
def test_non_logits_output_raises(name, fn, what):
    x, y = _batch()
    with pytest.raises(AttackError, match=r"^model output: .*logits tensor of shape \[N, K\]") as e:
        build(name, eps=0.1, norm="linf")(_Output(fn), x, y)
    assert what in str(e.value)


# ------------------------------------------------------------------ 4. non-finite logits
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name", ["pgd", "fgsm", "square", "cw-l2", "fab"])
def test_non_finite_logits_raise(name, bad):
    x, y = _batch()
    model = _Output(lambda z, x: z.index_fill(1, torch.tensor([0]), bad))
    norm = "l2" if name == "cw-l2" else "linf"
    with pytest.raises(AttackError, match=r"^model output: .*nan/inf"):
        build(name, eps=0.1, norm=norm)(model, x, y)


# --------------------------------------------------------------- 5. probability outputs
@pytest.mark.parametrize("name", ["pgd", "fgsm", "square", "apgd-ce"])
def test_probability_outputs_warn_once_per_call(name):
    x, y = _batch()
    attack = build(name, eps=0.1, norm="linf")
    with pytest.warns(RuntimeWarning, match="softmax") as rec:
        attack(_Output(lambda z, x: z.softmax(1)), x, y)
    assert sum("softmax" in str(w.message) for w in rec) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attack(MODEL, x, y)  # logits: no warning


def test_health_check_adds_no_forward_pass():
    """FGSM on a model whose width is known does exactly one forward (its gradient pass)."""
    x, y = _batch()
    model, attack = _Output(lambda z, x: z), build("fgsm", eps=0.1, norm="linf")
    attack(model, x, y)  # probes the width once
    model.calls = 0
    attack(model, x, y)
    assert model.calls == 1


# ---------------------------------------------------------- 3. norm, eps and step sizes
def test_unknown_norm_raises_attack_error():
    with pytest.raises(AttackError, match=r"^pgd\.norm: expected one of linf, l2, got 'l3'$"):
        create_attack("pgd", eps=0.1, norm="l3")
    with pytest.raises(ValueError, match="norm"):  # still a ValueError
        create_attack("pgd", eps=0.1, norm=2)


@pytest.mark.parametrize(("spelling", "norm"), [("Linf", "linf"), ("LINF", "linf"),
                                                ("L2", "l2"), ("l2", "l2")])
def test_torchattacks_norm_spellings_are_aliases(spelling, norm):
    assert create_attack("pgd", eps=0.1, norm=spelling).norm == norm
    assert create_attack("autoattack", eps=0.1, norm=spelling).norm == norm
    if norm == "l2":
        assert create_attack("cw-l2", norm=spelling).norm == "l2"


@pytest.mark.parametrize("eps", [8, 255, 1.5, torch.tensor([0.1, 2.0])])
def test_linf_eps_above_one_raises_naming_eps(eps):
    with pytest.raises(AttackError, match=r"^eps: .*8/255, not 8"):
        create_attack("pgd", eps=eps, norm="linf")


def test_l2_eps_above_one_is_fine():
    assert create_attack("pgd", eps=3.0, norm="l2").eps == 3.0
    assert create_attack("pgd", eps=1.0, norm="linf").eps == 1.0


@pytest.mark.parametrize("eps", [float("nan"), float("inf"), -0.1, "0.1", None])
def test_bad_eps_raises_naming_eps(eps):
    with pytest.raises(AttackError, match=r"^eps: "):
        create_attack("pgd", eps=eps, norm="l2")


@pytest.mark.parametrize("name", ["pgd", "fgsm-rs", "mifgsm"])
def test_zero_step_size_with_positive_eps_raises(name):
    with pytest.raises(AttackError, match=rf"^{name}\.step_size: .*> 0"):
        create_attack(name, eps=0.1, step_size=0.0)
    with pytest.raises(AttackError, match=rf"^{name}\.step_size: "):
        create_attack(name, eps=0.1, step_size=float("nan"))
    assert create_attack(name, eps=0.0, step_size=0.0).step_size == 0.0  # eps ramp at 0


# ------------------------------------------------------------- 6. property over inputs
# Each call breaks at most one thing (about half break none), so the property knows exactly
# which argument the error must name, and valid calls are common enough to be exercised.
SPELLINGS = {"linf": ["linf", "Linf", "LINF"], "l2": ["l2", "L2"], "l1": ["l1", "L1"],
             "l0": ["l0", "L0"]}
BAD_NORMS = ["l3", "inf", "", 2, None]
BAD_EPS = [math.nan, math.inf, -math.inf, -0.1, -1e-9]
X_DTYPES, BAD_X_DTYPES = ["float32", "float64", "float16", "bfloat16"], ["uint8", "int64", "numpy"]
BAD_X_VALUES = ["above", "below", "nan", "inf"]
Y_DTYPES, BAD_Y_DTYPES = ["int64", "int32", "uint8"], ["float32", "bool"]
BAD_Y_SHAPES, BAD_Y_VALUES = ["n1", "n+1"], ["k", "neg"]
BREAKABLE = ["norm", "eps", "x_dtype", "x_values", "y_dtype", "y_shape", "y_values"]


def _make_x(n: int, dtype: str, values: str):
    """`x` `[n, 1, 8, 8]`, with pixel (0, 0) of sample 0 set by `values`."""
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(n))
    if n:
        x[0, 0, 0, 0] = {"unit": 1.0, "above": 1.5, "below": -0.5,
                         "nan": math.nan, "inf": math.inf}[values]
    if dtype == "numpy":
        return x.numpy()
    if dtype in ("uint8", "int64"):
        return (x.nan_to_num().clamp(0, 1) * 255).to(getattr(torch, dtype))
    return x.to(getattr(torch, dtype))


def _make_y(n: int, dtype: str, shape: str, values: str):
    """Labels for `n` inputs over K classes; `values` "k" / "neg" spoil label 0."""
    y = torch.arange(n) % K
    if n and values != "ok":  # uint8 cannot hold -1: use K instead
        y[0] = K if values == "k" or dtype == "uint8" else -1
    extra = y[:1] if n else torch.zeros(1, dtype=torch.long)
    y = {"n": y, "n1": y[:, None], "n+1": torch.cat([y, extra])}[shape]
    return y.to(getattr(torch, dtype))


@st.composite
def calls(draw):
    """(name, kwargs of the call, the argument the call breaks or None)."""
    name = draw(st.sampled_from(ALL))
    broken = draw(st.sampled_from([None, None, None, *BREAKABLE]))

    def pick(field, good, bad):
        return draw(st.sampled_from(bad if broken == field else good))

    good_norms = [s for norm in sorted(NORMS_OF[name]) for s in SPELLINGS[norm]]
    other = [s for norm in set(SPELLINGS) - NORMS_OF[name] for s in SPELLINGS[norm]]
    norm = pick("norm", good_norms, BAD_NORMS + other)
    big = [1.5, 8.0, 255.0]
    linf = isinstance(norm, str) and norm.lower() == "linf"
    good_eps = st.one_of(st.floats(0.0, 0.3), st.sampled_from([0.0, 1.0] + ([] if linf else big)))
    bad_eps = st.sampled_from(BAD_EPS + (big if linf else []))
    if isinstance(norm, str) and norm.lower() == "l0":  # a whole number of pixels
        good_eps, bad_eps = st.integers(0, 10).map(float), st.sampled_from(BAD_EPS + [2.5])
    eps = draw(bad_eps if broken == "eps" else good_eps)
    # an unfitted universal patch cross-fits on the batch's two halves: one image is an error
    # of its own (tests/attacks/test_patch.py), not a bad argument of this call
    n = draw(st.integers(0, 3).filter(lambda v: name != "patch-universal" or v != 1))
    kw = {"name": name, "norm": norm, "eps": eps, "n": n}
    for field, good, bad in (("x_dtype", X_DTYPES, BAD_X_DTYPES),
                             ("x_values", ["unit"], BAD_X_VALUES),
                             ("y_dtype", Y_DTYPES, BAD_Y_DTYPES),
                             ("y_shape", ["n"], BAD_Y_SHAPES),
                             ("y_values", ["ok"], BAD_Y_VALUES)):
        kw[field] = pick(field, good, bad)
    if kw["n"] == 0 and broken in ("x_values", "y_values"):
        broken = None  # an empty batch has no values to spoil
    return kw, broken


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(call=calls())
def test_every_call_returns_a_valid_output_or_names_the_bad_argument(call):
    kw, broken = call
    expected = {"norm": "norm", "eps": "eps"}.get(broken, (broken or "")[:1])  # x_* -> x
    event(f"broken: {broken}")
    try:
        attack = build(kw["name"], eps=kw["eps"], norm=kw["norm"])
        x = _make_x(kw["n"], kw["x_dtype"], kw["x_values"])
        y = _make_y(kw["n"], kw["y_dtype"], kw["y_shape"], kw["y_values"])
        out = attack(MODEL, x, y)
    except AttackError as err:
        assert broken is not None and _field(err) == expected, (kw, broken, str(err))
        return
    assert broken is None, f"accepted a bad {broken}: {kw}"
    _assert_valid_output(out, x, kw["eps"], kw["norm"].lower(), attack.bounded)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(ALL),
    norm=st.sampled_from([*SPELLINGS["linf"], *SPELLINGS["l2"], *BAD_NORMS]),
    eps=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from([0.0, 1.0, 8 / 255, 8.0, *BAD_EPS])),
)
def test_construction_accepts_exactly_the_valid_norms_and_eps(name, norm, eps):
    canonical = norm.lower() if isinstance(norm, str) else None
    bad = set()
    if canonical not in NORMS_OF[name]:
        bad.add("norm")
    if not (math.isfinite(eps) and eps >= 0) or (canonical == "linf" and eps > 1):
        bad.add("eps")
    try:
        attack = build(name, eps=eps, norm=norm)
    except AttackError as err:
        assert _field(err) in bad, (name, norm, eps, str(err))
        return
    assert not bad, f"{name} accepted bad {bad}: norm={norm!r}, eps={eps!r}"
    assert attack.norm == canonical


def test_property_strategies_cover_valid_calls():
    """Guard against a vacuous property: a plain valid call of each kind succeeds."""
    x, y = _make_x(2, "float64", "unit"), _make_y(2, "int32", "n", "ok")
    out = build("pgd", eps=0.1, norm="Linf")(MODEL, x, y)
    _assert_valid_output(out, x, 0.1, "linf", True)


IMAGE_ONLY = [n for n in ALL if ATTACKS.get(n).needs_images]


def test_the_image_only_attacks_are_the_windowed_ones():
    """Square, Sparse-RS and sparse-PGD work on windows or pixels: they declare it once
    (`Attack.needs_images`) and the base class refuses anything but `[N, C, H, W]`."""
    assert set(IMAGE_ONLY) >= {"square", "sparse-rs", "sparse-pgd"}


@pytest.mark.parametrize("name", IMAGE_ONLY)
def test_image_only_attacks_refuse_flat_inputs_in_one_line(name):
    norm = sorted(NORMS_OF[name])[0]
    attack = build(name, eps=1 if norm == "l0" else 0.1, norm=norm)
    flat = nn.Sequential(nn.Linear(64, K))
    x, y = _batch()
    with pytest.raises(AttackError, match=rf"^x: {name} needs images \[N, C, H, W\], got "
                                          r"shape \(4, 64\)$") as err:
        attack(flat, x.flatten(1), y)
    assert "\n" not in str(err.value)
