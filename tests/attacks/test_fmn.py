"""FMN (attacks/fmn.py) and the minimum-norm API (attacks/min_norm.py): the distances it
returns are the measured norms of adversarial points; on a linear model (closed-form minimal
distance) it is optimal within 2 %; on a small CNN trained on real MNIST its median distance is
<= adv-lib's x 1.02 at equal steps; bad options fail in one line."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import types

import pytest
import torch
from fitting import fit_briefly
from torch import nn

from robustlab.attacks import AttackError, create_attack
from robustlab.attacks.min_norm import MinNormResult, distance

NORMS = ("l0", "l1", "l2", "linf")


def load_adv_lib(module: str):
    """An attack module of adv-lib (the reference), loaded by file: adv-lib's package
    `__init__` imports torchvision and its DDN file imports visdom, which the attacks never
    use (installed `--no-deps`)."""
    adv_lib = pytest.importorskip("adv_lib")
    sys.modules.setdefault("visdom", types.ModuleType("visdom"))
    path = pathlib.Path(adv_lib.__file__).parent / "attacks" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"_adv_lib_ref_{module}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def linear_model(seed: int = 0, d: int = 64) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 2-class linear model on `[N, 1, 8, 8]` inputs and 32 images near its boundary (in
    the middle of the box, so the closest adversarial point is inside [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, d, generator=g))
        lin.bias.zero_()
    model = nn.Sequential(nn.Flatten(), lin).eval()
    x = 0.5 + 0.02 * torch.randn(32, 1, 8, 8, generator=g)
    y = model(x).argmax(1)
    return model, x, y


def closed_form(model: nn.Module, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Minimal distance to the linear boundary: |margin| / ||w_1 - w_0||_dual."""
    lin = model[1]
    w = (lin.weight[1] - lin.weight[0]).double()
    margin = (model(x)[:, 1] - model(x)[:, 0]).double().abs()
    dual = {"l2": w.norm(p=2), "linf": w.abs().sum(), "l1": w.abs().max()}[norm]
    return margin / dual


@pytest.mark.parametrize("norm", NORMS)
def test_distances_are_the_norms_of_adversarial_points(norm, tiny_model, tiny_batch):
    """Where the distance is finite the returned point fools the model and the distance is
    the norm of x_adv - x; where it is inf the input comes back; `attack(...)` returns the
    same points as `run(...)`."""
    x, y = tiny_batch
    tiny_model.eval()
    attack = create_attack("fmn", norm=norm, steps=30)
    result = attack.run(tiny_model, x, y)
    assert isinstance(result, MinNormResult) and result.norm == norm
    d = result.distances
    assert d.shape == (len(x),) and d.dtype == torch.float64
    found = torch.isfinite(d)
    assert int(found.sum()) >= len(x) // 2, d
    fooled = tiny_model(result.x_adv).argmax(1) != y
    assert torch.equal(found, fooled)
    assert torch.equal(d[found], distance(result.x_adv - x, norm)[found])
    assert torch.equal(result.x_adv[~found], x[~found])
    assert torch.equal(attack(tiny_model, x, y), result.x_adv)


@pytest.mark.parametrize(("norm", "within"), [("l2", 1.02), ("linf", 1.02), ("l1", 1.07)])
def test_fmn_is_optimal_on_a_linear_model(norm, within):
    """A linear model's minimal distance has a closed form; FMN finds it within 2 % (l1:
    7 %, where adv-lib's fmn measured 1.063 on these images at 100 steps), never below it.
    The boundary estimate is exact here, so an iterate can land on the boundary from the
    clean side and stay there: a few l2 images are missed (adv-lib's fmn misses 5 of these
    32 too), at most a quarter."""
    model, x, y = linear_model()
    d = create_attack("fmn", norm=norm, steps=100).run(model, x, y).distances
    best = closed_form(model, x, norm)
    found = torch.isfinite(d)
    assert int(found.sum()) >= 0.75 * len(x)
    assert bool((d[found] >= best[found] * (1 - 1e-4)).all())
    assert bool((d[found] <= best[found] * within).all()), (d[found] / best[found]).max()


def test_accuracy_read_off_the_distances_equals_a_fixed_eps_pgd_run():
    """On the linear model a fixed-eps PGD-Linf run is exact too (the loss is linear and the
    sign step reaches the ball's corner), so the robust accuracy read off FMN's distances at
    an eps equals a PGD run at that eps image for image (away from an eps within 1 % of an
    image's distance: float ties)."""
    from robustlab.evaluation.metrics import accuracy_from_distances

    model, x, y = linear_model(seed=1)
    d = create_attack("fmn", norm="linf", steps=100).run(model, x, y).distances
    assert bool(torch.isfinite(d).all())
    for q in (0.25, 0.5, 0.75):
        eps = float(d.quantile(q)) * 1.03
        x_pgd = create_attack("pgd", eps=eps, norm="linf", steps=20)(model, x, y)
        with torch.no_grad():
            robust_pgd = model(x_pgd).argmax(1) == y
        robust_read = d > eps * (1 + 1e-5) + 1e-6
        clear = ((d - eps).abs() / eps) > 0.01
        assert int(clear.sum()) >= 0.75 * len(x)
        assert torch.equal(robust_pgd[clear], robust_read[clear]), eps
        assert accuracy_from_distances(d, eps) == robust_read.double().mean().item()


@pytest.fixture(scope="module")
def mnist_cnn(mnist_splits):
    return mnist_cnn_fitted(mnist_splits, seed=0)


def mnist_cnn_fitted(mnist_splits, seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small CNN (not robustlab's) fitted for one epoch on 2,000 real MNIST images, and 64
    test images it classifies correctly."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 5, stride=2),
                          nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    train = mnist_splits.train
    fit_briefly(model, train.x[:2000], train.y[:2000], lr=3e-3, seed=seed)
    x, y = mnist_splits.test.x[:128], mnist_splits.test.y[:128]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return model, x[ok][:64], y[ok][:64]


def _adv_lib_distances(model, x, y, norm: str, steps: int) -> torch.Tensor:
    x_ref = load_adv_lib("fast_minimum_norm").fmn(
        model, x, y, norm={"l0": 0, "l1": 1, "l2": 2, "linf": float("inf")}[norm],
        steps=steps).detach()
    with torch.no_grad():
        fooled = model(x_ref).argmax(1) != y
    return torch.where(fooled, distance(x_ref - x, norm), torch.tensor(float("inf")).double())


@pytest.mark.parametrize("norm", NORMS)
def test_fmn_median_distance_within_2_percent_of_adv_lib(norm, mnist_cnn, one_thread):
    """Equal steps (FMN draws no random numbers: one run is its mean over seeds): the median
    over all images (an unsolved one counts as inf) and, since adv-lib leaves more than half
    unsolved in l2 (an inf median), also over the images both solve; and at least as many
    images solved."""
    model, x, y = mnist_cnn
    ours = create_attack("fmn", norm=norm, steps=50).run(model, x, y).distances
    ref = _adv_lib_distances(model, x, y, norm, steps=50)
    assert ours.median() <= ref.median() * 1.02, (norm, ours.median(), ref.median())
    both = torch.isfinite(ours) & torch.isfinite(ref)
    assert int(both.sum()) >= 10, norm
    assert ours[both].median() <= ref[both].median() * 1.02, norm
    assert int(torch.isfinite(ours).sum()) >= int(torch.isfinite(ref).sum()), norm


@pytest.mark.parametrize("norm", NORMS)
def test_without_the_box_aware_step_fmn_is_adv_libs(norm, mnist_cnn, one_thread):
    """`box_aware=False` is adv-lib's algorithm: the same images solved, the same distances
    (float32 rounding apart: l1's projection drifts by up to 2e-4 on one image of these)."""
    model, x, y = mnist_cnn
    ours = create_attack("fmn", norm=norm, steps=50, box_aware=False).run(model, x, y).distances
    ref = _adv_lib_distances(model, x, y, norm, steps=50)
    assert torch.equal(torch.isfinite(ours), torch.isfinite(ref)), norm
    found = torch.isfinite(ref)
    assert torch.allclose(ours[found], ref[found], rtol=1e-3, atol=1e-5), norm


@pytest.mark.parametrize("norm", ("l1", "l2"))
def test_the_box_aware_step_solves_the_images_adv_libs_step_leaves(norm, mnist_cnn,
                                                                   one_thread):
    """On MNIST (most pixels at 0) adv-lib's l1 / l2 step stalls short of the boundary on
    some images; the default box-aware step solves every one of them, at a smaller median."""
    model, x, y = mnist_cnn
    ours = create_attack("fmn", norm=norm, steps=50).run(model, x, y).distances
    ref = _adv_lib_distances(model, x, y, norm, steps=50)
    assert int(torch.isinf(ref).sum()) >= 3, ref  # the stall this test is about happens
    assert bool(torch.isfinite(ours).all()), ours
    assert float(ours.median()) < float(ref.median())


@pytest.mark.parametrize(("options", "field"), [
    ({"norm": "l3"}, "fmn.norm"),
    ({"steps": 0}, "fmn.steps"),
    ({"gamma_init": 1.5}, "fmn.gamma_init"),
    ({"alpha_final": -1.0}, "fmn.alpha_final"),
    ({"box_aware": "yes"}, "fmn.box_aware"),
])
def test_bad_fmn_options_fail_in_one_line(options, field):
    with pytest.raises(AttackError) as err:
        create_attack("fmn", **options)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)


def _evaluated(norm: str = "l2") -> dict:
    from robustlab.evaluation.evaluate import evaluate_model
    from robustlab.evaluation.settings import EvalSettings

    model, x, y = linear_model(seed=2)
    y[:3] = 1 - y[:3]  # three images misclassified clean: distance 0
    settings = EvalSettings(eps=0.01, norm=norm, attacks=["fmn", "pgd"], curve_attack=None,
                            curve_factors=(), audit=False,
                            attack_options={"fmn": {"steps": 30}, "pgd": {"steps": 5}})
    return evaluate_model(model, x, y, settings)


def test_evaluate_writes_the_distances_and_its_accuracy_is_read_off_them():
    """`evaluate --attacks fmn` keeps each image's distance (null: not fooled) in the eval
    result, in the evaluation's norm, and its robust accuracy at eps is the fraction of
    distances beyond eps (the same count, image for image)."""
    import json

    from robustlab.evaluation.metrics import accuracy_from_distances
    from robustlab.evaluation.schema import check_eval_dict

    data = json.loads(json.dumps(_evaluated("linf"), allow_nan=False))
    check_eval_dict(data, "eval.json")
    entry = data["per_sample"]["distances"]["fmn"]
    assert entry["norm"] == "linf" and len(entry["values"]) == data["n"]
    assert entry["values"][:3] == [0.0, 0.0, 0.0]
    assert list(data["per_sample"]["distances"]) == ["fmn"]  # pgd has no distances
    d = torch.tensor([float("inf") if v is None else v for v in entry["values"]])
    assert accuracy_from_distances(d, 0.01) == data["attacks"]["fmn"]["acc"]
    robust = [c == "1" for c in data["per_sample"]["correct"]["fmn"]]
    assert robust == (d.double() > 0.01 * (1 + 1e-5) + 1e-6).tolist()


@pytest.mark.parametrize(("edit", "field"), [
    (lambda e: e["values"].__setitem__(4, -1.0), "per_sample.distances.fmn.values[4]"),
    (lambda e: e["values"].__setitem__(4, "far"), "per_sample.distances.fmn.values[4]"),
    (lambda e: e["values"].pop(), "per_sample.distances.fmn.values"),
    (lambda e: e.__setitem__("norm", "l3"), "per_sample.distances.fmn.norm"),
])
def test_a_bad_distance_in_an_eval_file_is_one_line(edit, field):
    """Bad distances are refused with one line naming the field; a file without the field
    (every file before it) still reads."""
    import json

    from robustlab.evaluation.schema import EvalFileError, check_eval_dict

    data = json.loads(json.dumps(_evaluated()))
    old = json.loads(json.dumps(data))
    del old["per_sample"]["distances"]
    check_eval_dict(old, "old.json")
    edit(data["per_sample"]["distances"]["fmn"])
    with pytest.raises(EvalFileError) as err:
        check_eval_dict(data, "eval.json")
    assert str(err.value).startswith(f"eval.json: {field}") and "\n" not in str(err.value)


def test_the_report_draws_the_curve_read_off_the_distances():
    """Figure 3 gets, beside PGD's curve, a dashed curve read off the eval file's distances
    (through `collect.record_from_eval`): at each eps its height is the share of images whose
    distance is beyond it; a record without distances (older files) draws as before."""
    import matplotlib

    matplotlib.use("Agg")
    from robustlab.reporting import fig_accuracy
    from robustlab.reporting.tables import groups

    values = [0.0, 0.1, 0.2, 0.3, None]
    base = {"run": "r", "run_dir": "runs/r", "dataset": "mnist", "method": "standard",
            "seed": 0, "protocol": "paper", "label": "paper", "eps": 0.1, "norm": "l2",
            "n": 5, "train_eps": 0.1, "health": "ok", "flagged": False, "clean": 0.8,
            "worst": 0.4, "curve_n": 5, "_curve": [{"eps": 0.0, "acc": 0.8, "n": 5},
                                                   {"eps": 0.2, "acc": 0.4, "n": 5}]}
    rec = {**base, "_distances": {"fmn": {"norm": "l2", "values": values}}}
    fig = fig_accuracy.curve_figure(groups([rec]))
    dashed = [ln for ln in fig.axes[0].lines if "FMN distances" in ln.get_label()]
    assert len(dashed) == 1
    xs, ys = dashed[0].get_data()
    assert xs[0] == 0.0 and abs(xs[-1] - 0.2) < 1e-12
    for x, acc in zip(xs, ys, strict=True):
        assert acc == 100 * sum(v is None or v > x * (1 + 1e-5) + 1e-6 for v in values) / 5
    old = fig_accuracy.curve_figure(groups([base]))
    assert not [ln for ln in old.axes[0].lines if "distances" in ln.get_label()]
    wrong_norm = {**base, "_distances": {"fmn": {"norm": "linf", "values": values}}}
    assert not [ln for ln in fig_accuracy.curve_figure(groups([wrong_norm])).axes[0].lines
                if "distances" in ln.get_label()]


def test_a_resumed_evaluation_keeps_the_distances(tmp_path, monkeypatch):
    """A killed evaluation's finished batches (`evaluation/partial.py`) carry the distances:
    a rerun that takes every batch from the partial file writes the same ones."""
    from robustlab.evaluation.evaluate import evaluate_model
    from robustlab.evaluation.partial import partial_path
    from robustlab.evaluation.settings import EvalSettings

    model, x, y = linear_model(seed=3)
    settings = EvalSettings(eps=0.01, norm="l2", attacks=["fmn"], curve_attack=None,
                            curve_factors=(), audit=False, batch_size=16,
                            attack_options={"fmn": {"steps": 20}})
    out = tmp_path / "eval.json"
    first = evaluate_model(model, x, y, settings, resume=out)
    assert partial_path(out).is_file()
    from robustlab.attacks.fmn import FMN

    def refuse(*args, **kwargs):
        raise AssertionError("the rerun attacked instead of reading the partial file")

    monkeypatch.setattr(FMN, "perturb", refuse)
    again = evaluate_model(model, x, y, settings, resume=out)
    assert again["per_sample"]["distances"] == first["per_sample"]["distances"]
    assert any(v for v in first["per_sample"]["distances"]["fmn"]["values"])
