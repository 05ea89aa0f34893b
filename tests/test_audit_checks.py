"""Gradient-masking audit checks (#17): `finite_logits`, `collapse` and the two-sided
`more_steps`, each both ways on tiny hand-built models (plus a small trained MNIST net), and
`robustlab.evaluate` carrying them into the eval JSON."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import robustlab
from robustlab.evaluation import EvalSettings, evaluate_model
from robustlab.evaluation.audit import (
    CHECKS,
    COLLAPSE_SHARE,
    AuditInputs,
    more_steps_check,
    run_audit,
    tolerance,
)
from robustlab.evaluation.schema import check_eval_dict
from robustlab.evaluation.table import format_result_table

NEW_CHECKS = ("finite_logits", "collapse")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Chunks(nn.Module):
    """K classes: logit k is 10 x the mean of the k-th quarter (K = 4) of the pixels."""

    def __init__(self, k: int = 4):
        super().__init__()
        self.k = k

    def forward(self, x):
        return 10 * x.flatten(1).reshape(len(x), self.k, -1).mean(2)


class Constant(Chunks):
    """Predicts class 0 for every input (a collapsed model; logits still depend on x)."""

    def forward(self, x):
        return 1e-3 * super().forward(x) + torch.tensor([5.0, 0.0, 0.0, 0.0])


class NaNLogits(Chunks):
    def forward(self, x):
        return super().forward(x) * float("nan")


class InfWhenBright(Chunks):
    """Finite on the clean images (pixels <= 0.5), +inf once any pixel exceeds 0.6."""

    def forward(self, x):
        out = super().forward(x)
        bright = x.flatten(1).amax(1, keepdim=True) > 0.6
        return torch.where(bright, torch.full_like(out, float("inf")), out)


def chunk_data(n: int = 20, k: int = 4):
    """Images 1x8x8 whose quarter y is brighter (0.5) than the rest (0.35): `Chunks` gets all
    right, each class predicted equally often."""
    y = torch.arange(n) % k
    x = torch.full((n, 1, 8, 8), 0.35)
    x.view(n, k, -1)[torch.arange(n), y] = 0.5
    return x, y


class MeanThreshold(nn.Module):
    """Two classes split at mean pixel 0.5: on a constant image 0.5 + m the Linf distance to the
    boundary is exactly |m|, and PGD's sign steps walk straight at it."""

    def forward(self, x):
        s = x.flatten(1).mean(1, keepdim=True) - 0.5
        return 20 * torch.cat([s, -s], 1)


def threshold_data():
    """Per class: 4 images at Linf distance 0.07 from the boundary, 2 at 0.03, 4 at 0.3."""
    margins = torch.tensor([0.07] * 4 + [0.03] * 2 + [0.3] * 4)
    x = torch.cat([0.5 + margins, 0.5 - margins]).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)
    y = torch.cat([torch.zeros(10), torch.ones(10)]).long()
    return x.contiguous(), y


def audit_of(model, x, y, *, attacks=("fgsm", "pgd"), eps=0.1, options=None):
    settings = EvalSettings(attacks=attacks, eps=eps, n=len(x), batch_size=len(x),
                            curve_attack=None, audit_n=len(x), audit_square_queries=10,
                            attack_options=options or {})
    result = evaluate_model(model, x, y, settings)
    return result, {c["name"]: c for c in result["audit"]["checks"]}


def test_new_checks_are_registered_first():
    names = [c.__name__.removesuffix("_check") for c in CHECKS]
    assert names[:2] == list(NEW_CHECKS) and "more_steps" in names


# ------------------------------------------------------------------ collapse


def test_collapse_flags_a_constant_classifier():
    x, y = chunk_data()
    result, by = audit_of(Constant(), x, y)
    c = by["collapse"]
    assert c["status"] == "flag" and "collapse" in result["audit"]["flags"]
    assert c["values"]["clean_acc"] == pytest.approx(0.25)
    assert c["values"]["chance"] == pytest.approx(0.25)
    assert c["values"]["dominant_class"] == 0
    assert c["values"]["dominant_class_share"] == pytest.approx(1.0)
    for text in ("clean accuracy 0.250", "chance 1/4 = 0.250", "100.0%", "at chance",
                 "collapsed onto one class"):
        assert text in c["reason"]


def test_collapse_flags_below_chance_even_with_balanced_predictions():
    x, y = chunk_data()
    result, by = audit_of(Chunks(), x, (y + 1) % 4)  # every label wrong, predictions balanced
    c = by["collapse"]
    assert c["status"] == "flag" and c["reason"].startswith("below chance")
    assert "collapsed" not in c["reason"] and c["values"]["dominant_class_share"] == 0.25
    assert result["attacks"]["pgd"]["gap"] == 0.0  # the gap that is not robustness


def test_collapse_flags_one_dominant_class_above_chance():
    x, y = chunk_data()
    y = torch.where(torch.arange(len(y)) < 10, torch.zeros_like(y), y)  # class 0: 60% of labels
    _, by = audit_of(Constant(), x, y)
    c = by["collapse"]
    assert c["values"]["clean_acc"] > c["values"]["chance"]  # above chance, yet collapsed
    assert c["status"] == "flag" and c["reason"].startswith("collapsed onto one class")
    assert c["values"]["dominant_class_share"] > COLLAPSE_SHARE


def test_collapse_passes_a_healthy_model_and_a_one_class_test_set():
    x, y = chunk_data()
    _, by = audit_of(Chunks(), x, y)
    assert by["collapse"]["status"] == "pass", by["collapse"]
    # every label class 0 and a model predicting class 0 everywhere: right, not collapsed
    _, by = audit_of(Constant(), x, torch.zeros_like(y))
    assert by["collapse"]["status"] == "pass", by["collapse"]
    assert by["collapse"]["values"]["label_share"] == 1.0


def test_collapse_reads_every_evaluated_sample_not_only_audit_n():
    x, y = chunk_data(40)
    pred = Constant()(x).argmax(1)
    settings = EvalSettings(attacks=("fgsm",), eps=0.1, audit_n=8, audit_square_queries=5)
    audit = run_audit(Constant(), x, y, pred == y, clean_pred=pred, settings=settings,
                      outcomes={}, curve=[], num_classes=4)
    c = next(c for c in audit["checks"] if c["name"] == "collapse")
    assert audit["n"] == 8 and c["values"]["n"] == 40 and c["status"] == "flag"


# ------------------------------------------------------------ finite_logits


def test_finite_logits_flags_nan_logits_and_skips_the_attacks_that_refuse_them():
    """run_audit on a NaN model: flagged; the checks whose attacks refuse nan/inf logits are
    skipped with the attack's message rather than ending the audit."""
    x, y = chunk_data()
    pred = torch.zeros(len(y), dtype=torch.long)
    settings = EvalSettings(attacks=("fgsm",), eps=0.1, audit_n=len(x), audit_square_queries=5)
    audit = run_audit(NaNLogits(), x, y, pred == y, clean_pred=pred, settings=settings,
                      outcomes={}, curve=[], num_classes=4)
    by = {c["name"]: c for c in audit["checks"]}
    c = by["finite_logits"]
    assert c["status"] == "flag" and "finite_logits" in audit["flags"]
    assert c["values"]["nonfinite_clean"] == len(x) and c["values"]["kinds"] == ["NaN"]
    assert "20 of 20 clean inputs give non-finite logits (NaN)" in c["reason"]
    assert by["large_eps"]["status"] == "skipped" and "nan/inf" in by["large_eps"]["reason"]
    assert "large_eps" in c["values"]["nonfinite_in_checks"]
    assert by["randomness"]["status"] == "pass"  # NaN == NaN here: not mistaken for randomness


def test_finite_logits_flags_non_finite_adversarial_outputs():
    """Finite on clean images, +inf once FGSM brightens a pixel: the attack's confidences are
    NaN (and the large-budget PGD refuses the model)."""
    x, y = chunk_data()
    result, by = audit_of(InfWhenBright(), x, y, attacks=("fgsm",), eps=0.3)
    c = by["finite_logits"]
    assert c["status"] == "flag" and c["values"]["nonfinite_clean"] == 0
    assert c["values"]["nonfinite_adv"] == {"fgsm": len(x)}
    assert "adversarial examples of fgsm" in c["reason"]
    assert by["large_eps"]["status"] == "skipped"
    json.dumps(result)  # still JSON-ready


def test_finite_logits_passes_a_finite_model():
    x, y = chunk_data()
    _, by = audit_of(Chunks(), x, y)
    c = by["finite_logits"]
    assert c["status"] == "pass", c
    assert c["values"] == {"nonfinite_clean": 0, "n_clean": len(x), "kinds": [],
                           "nonfinite_adv": {}, "nonfinite_in_checks": []}


# --------------------------------------------------------------- more_steps


def test_more_steps_flags_an_unconverged_pgd():
    """PGD-2 with step 0.025 moves at most 0.05 of eps 0.1; PGD-10 with the same step reaches
    the 0.07-margin images: accuracy 0.8 -> 0.4, far beyond the tolerance (0.1 on 20)."""
    x, y = threshold_data()
    weak = {"pgd": {"steps": 2, "step_size": 0.025, "random_start": False}}
    result, by = audit_of(MeanThreshold(), x, y, eps=0.1, options=weak)
    c = by["more_steps"]
    assert result["attacks"]["pgd"]["acc"] == pytest.approx(0.8)
    assert c["status"] == "flag" and c["values"]["direction"] == "not_converged"
    assert c["values"]["base"] == pytest.approx(0.8) and c["values"]["strong"] == pytest.approx(0.4)
    assert c["values"]["options"]["steps"] == 10 and c["values"]["options"]["restarts"] == 3
    assert c["reason"].startswith("attack not converged — numbers are upper bounds: ")
    assert "0.400" in c["reason"] and "0.800" in c["reason"] and "pgd-2" in c["reason"]
    assert "FLAGGED" in format_result_table(result) and "more_steps" in result["audit"]["flags"]


def test_more_steps_passes_a_converged_pgd():
    x, y = threshold_data()
    result, by = audit_of(MeanThreshold(), x, y, eps=0.1)  # PGD-10, step 2.5 eps / 10
    c = by["more_steps"]
    assert result["attacks"]["pgd"]["acc"] == pytest.approx(0.4)
    assert c["status"] == "pass" and c["values"]["direction"] is None, c
    assert c["values"]["strong"] == pytest.approx(0.4)


def test_more_steps_flags_one_small_step_on_a_trained_mnist_net(mnist_root):
    from robustlab.data import load_dataset

    data = load_dataset("mnist", mnist_root, val_size=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    xt, yt = data.train.x[:4000], data.train.y[:4000]
    for _ in range(3):  # plain SGD, 120 steps: about 90 % clean
        for i in range(0, len(xt), 100):
            net.zero_grad()
            nn.functional.cross_entropy(net(xt[i:i + 100]), yt[i:i + 100]).backward()
            with torch.no_grad():
                for p in net.parameters():
                    p -= 0.1 * p.grad
    net.eval()
    x, y = data.test.x[:100], data.test.y[:100]
    weak = {"pgd": {"steps": 1, "step_size": 0.01, "random_start": False}}
    result, by = audit_of(net, x, y, eps=0.1, options=weak)
    assert result["clean"]["acc"] > 0.8 and by["collapse"]["status"] == "pass"
    c = by["more_steps"]
    assert c["status"] == "flag" and c["values"]["direction"] == "not_converged", c
    assert c["values"]["strong"] < c["values"]["base"] - tolerance(100)


def _inputs(base_hits: int, strong_hits: int, n: int = 100) -> AuditInputs:
    """A more_steps input whose evaluated PGD leaves `base_hits` of `n` robust and whose
    stronger PGD `strong_hits` (a stand-in attack: the comparison alone)."""
    mask = lambda k: torch.arange(n) < k  # noqa: E731
    return AuditInputs(
        model=Chunks(), x=torch.zeros(n, 1, 8, 8), y=torch.zeros(n, dtype=torch.long),
        clean_pred=torch.zeros(n, dtype=torch.long),
        settings=EvalSettings(attacks=("pgd",), eps=0.1), base={"pgd": mask(base_hits)},
        curve=[], num_classes=4, surrogate=None, pgd_name="pgd", tol=tolerance(n),
        attack_acc=lambda name, eps, options=None: mask(strong_hits))


@pytest.mark.parametrize("base,strong,status,direction", [
    (50, 50, "pass", None),
    (50, 48, "pass", None),            # exactly the tolerance (2 samples of 100) lower
    (50, 47, "flag", "not_converged"),  # one sample more
    (50, 52, "pass", None),
    (50, 53, "flag", "weaker"),        # the stronger attack weaker: flagged as before
])
def test_more_steps_is_two_sided_with_the_paired_tolerance(base, strong, status, direction):
    c = more_steps_check(_inputs(base, strong))
    assert (c["status"], c["values"]["direction"]) == (status, direction), c["reason"]
    assert c["values"]["tolerance"] == pytest.approx(0.02)
    if direction == "not_converged":
        assert c["reason"].startswith("attack not converged — numbers are upper bounds")
    if direction == "weaker":
        assert c["reason"].startswith("stronger attack weaker")


def test_more_steps_never_uses_fewer_restarts_than_the_evaluated_pgd():
    a = _inputs(50, 50)
    a.settings = EvalSettings(attacks=("pgd",), eps=0.1, attack_options={"pgd": {"restarts": 5}})
    assert more_steps_check(a)["values"]["options"] == {"restarts": 5, "steps": 50}


# ------------------------------------------------------------------ end to end


def test_public_evaluate_carries_the_new_checks_into_the_eval_json():
    x, y = chunk_data()
    r = robustlab.evaluate(Constant(), x, y, eps=0.1, attacks=("fgsm", "pgd"), audit=True,
                           attack_options={"pgd": {"steps": 5}})
    details = json.loads(json.dumps(r.details))
    check_eval_dict(details, "roundtrip")
    checks = {c["name"]: c for c in details["audit"]["checks"]}
    assert set(NEW_CHECKS) | {"more_steps"} <= set(checks)
    assert all(set(c) == {"name", "status", "reason", "values"} for c in checks.values())
    assert checks["collapse"]["status"] == "flag" and details["audit"]["flagged"]
    assert "collapse" in details["audit"]["flags"] and checks["finite_logits"]["status"] == "pass"
    assert "audit FLAG    collapse" in format_result_table(details)

    healthy = robustlab.evaluate(Chunks(), x, y, eps=0.1, attacks=("fgsm", "pgd"), audit=True)
    by = {c["name"]: c["status"] for c in healthy.details["audit"]["checks"]}
    assert by["collapse"] == by["finite_logits"] == by["more_steps"] == "pass"
