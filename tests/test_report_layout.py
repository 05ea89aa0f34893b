"""Issue #37 items 6 and 8: report.html shows every figure at its own pixel size, every figure
has one width and one set of font sizes, Figure 5 zooms to the data (full range in an inset),
the eps curve is dense around the budget, the summary says where the hybrid stands, and the
gradient-masking audit never compares attacks of different threat models (patches)."""

from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from test_figures import _paper_like, _rec  # noqa: E402
from test_report import _as_experiment, _fake_eval  # noqa: E402

from robustlab.reporting import (  # noqa: E402
    fig_accuracy,
    fig_training,
    fig_transfer,
    figures,
    write_report,
)
from robustlab.reporting.plot_style import FIG_WIDTH, NOTE_SIZE, RC  # noqa: E402
from robustlab.reporting.render import png_size  # noqa: E402
from robustlab.reporting.report import hybrid_sentence  # noqa: E402
from robustlab.reporting.tables import groups, hybrid_standing  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    numbers = {"standard": (0.99, 0.01), "pgd-at": (0.97, 0.40), "hybrid": (0.98, 0.42)}
    for method, (clean, adv) in numbers.items():
        for seed in (0, 1):
            run = root / "runs" / f"{method}-s{seed}"
            run.mkdir(parents=True)
            (run / "eval.json").write_text(__import__("json").dumps(
                _fake_eval(method, seed, 0.3, clean - 0.01 * seed, adv + 0.02 * seed)))
    _as_experiment(root)
    return write_report(root)


def test_html_shows_each_figure_at_its_natural_pixel_size(report):
    """Figures were stretched to the column's width (`width:100%`): twice their size when
    small, a quarter smaller (and their text with them) when wide."""
    page = report["html"].read_text()
    imgs = re.findall(r"<img [^>]*>", page)
    assert len(imgs) == len(list(report["figures"].glob("*.png"))) >= 4
    for tag in imgs:
        data = base64.b64decode(re.search(r"base64,([^']+)'", tag).group(1))
        width, height = png_size(data)
        assert f"width='{width}'" in tag and f"height='{height}'" in tag
        assert 600 < width <= FIG_WIDTH * 110 + 50  # FIG_WIDTH inches at DPI 110 (+ tight bbox)
    css = page.split("<style>")[1].split("</style>")[0]
    assert "figure img{display:block;max-width:100%;height:auto}" in css
    assert "width:100%" not in css.replace("max-width:100%", "")
    # a click shows the whole figure (a CSS toggle: the page has no script)
    assert page.count("<label class='zoom'") == len(imgs) and "<script" not in page
    with pytest.raises(ValueError, match="expected a PNG file"):
        png_size(b"GIF89a" + bytes(30), "x.gif")


def _figures() -> list:
    recs = _paper_like()
    gs = groups(recs)
    head = {k: v for k, v in gs.items() if k[0] == "mnist"}
    models = [f"m{i}" for i in range(13)]
    transfer = {"models": models, "settings": {"norm": "linf", "eps": 0.3, "steps": 20,
                                               "images": 500, "attacks": ["pgd", "mifgsm"]},
                "attacks": {a: {"matrix": [[50.0 / 100] * 13] * 13, "ensemble": [0.4] * 13}
                            for a in ("pgd", "mifgsm")}}
    with plt.rc_context(RC):
        return [figures.confidence_figure(recs, "mnist"), fig_accuracy.attack_bars_figure(head),
                fig_accuracy.curve_figure(gs), fig_training.training_figure(recs),
                fig_accuracy.tradeoff_figure(gs), fig_transfer.transfer_figure(transfer)]


def test_every_figure_has_one_width_and_the_same_font_sizes():
    """Figure 4 was 12.9 inches wide with 10-point titles, the others 11.2-11.5 inches with
    11-point titles (the transfer heat maps 17): shown at one width, their text differed."""
    figs = _figures()
    try:
        allowed = {float(v) for k, v in RC.items() if k != "figure.titlesize"}
        for i, fig in enumerate(figs, 1):
            assert fig.get_figwidth() == pytest.approx(FIG_WIDTH), f"figure {i}"
            fig.canvas.draw()
            sizes = {t.get_fontsize() for t in fig.findobj(Text)
                     if t.get_text() and t.get_visible() and t is not fig._suptitle}
            assert sizes <= allowed | {float(NOTE_SIZE)}, (i, sizes)
            titles = {ax.title.get_fontsize() for ax in fig.axes if ax.get_title()
                      and ax.get_label() != "<colorbar>" and ax.get_position().width > 0.2}
            assert titles == {RC["axes.titlesize"]}, (i, titles)
    finally:
        for fig in figs:
            plt.close(fig)


def test_figure5_zooms_to_the_robust_group_with_the_full_range_in_an_inset():
    """Three methods at ~0 % squeezed the robust ones into a strip of a 0-100 axis."""
    recs = ([_rec(m, clean=0.98 - 0.01 * i, worst=0.80 + 0.01 * i)
             for i, m in enumerate(("pgd-at", "trades", "mart", "hybrid", "free-at", "mix"))]
            + [_rec(m, clean=0.99, worst=0.01 * i)
               for i, m in enumerate(("standard", "lipschitz", "gradient-reg"))])
    fig = fig_accuracy.tradeoff_figure(groups(recs))
    try:
        ax = fig.axes[0]
        lo, hi = ax.get_ylim()
        assert 70 < lo < 80 and 85 < hi <= 101
        (inset,) = ax.child_axes
        assert inset.get_ylim() == (-5, 105)  # the full 0-100 % range
        assert len(inset.lines) == 9  # every method, the far-off ones included
    finally:
        plt.close(fig)
    assert fig_accuracy.zoom_floor([80, 81, 82, 83, 1, 0]) == pytest.approx(40.5)
    assert fig_accuracy.zoom_floor([80, 74, 66, 58]) is None  # no gap over 10 points
    assert fig_accuracy.zoom_floor([90, 2, 1, 0]) is None  # the group would be under half


def test_curve_grid_is_dense_around_the_budget():
    """The curve had 1.0 then 1.5 x eps: a straight line across the fall at the budget."""
    from robustlab.evaluation import EvalSettings
    from robustlab.experiments.presets import EvalPlan

    grid = EvalSettings(eps=0.3).curve_factors
    assert EvalPlan().curve_factors == grid
    assert any(0.9 <= f < 1 for f in grid) and any(1 < f <= 1.1 for f in grid)
    assert len([f for f in grid if 0 < f != 1]) <= 8  # cost: PGD runs beside the evaluation's
    assert min(grid) == 0 and max(grid) == 2.0


def _block(rows, failed=()):
    return {"rows": [{"method": m, "flagged": fl, "cells": {"worst": {"mean": w, "std": s}}}
                     for m, w, s, fl in rows], "failed": list(failed)}


def test_summary_says_where_the_hybrid_stands(report):
    md = report["md"].read_text()
    summary = md.split("## Summary")[1].split("\n## ")[0]
    line = next(ln for ln in summary.splitlines() if "Where the paper's hybrid stands" in ln)
    # hybrid 43 % (42 / 44) vs pgd-at 41 % (40 / 42): 2 pp, std 1.41 each
    assert "mnist paper eps 0.3: 1st of 3, 2.0 pp above pgd-at — within the seeds' spread" in line
    below = hybrid_standing(_block([("trades", 60.0, None, False), ("hybrid", 55.0, None, False),
                                    ("pgd-at", 58.0, None, True)]))
    assert below == {"status": "ranked", "rank": 2, "of": 2, "other": "trades",
                     "margin": -5.0, "exceeds_spread": None}
    sentence = hybrid_sentence([{"dataset": "d", "protocol": "recipe", "eps": 0.1,
                                 "hybrid": below}])
    assert "2nd of 2, 5.0 pp below trades (one seed: the seeds' spread is unknown)" in sentence
    assert hybrid_standing(_block([("hybrid", 70.0, 1.0, True)]))["status"] == "flagged"
    assert hybrid_standing(_block([("trades", 1.0, None, False)])) is None
    assert hybrid_standing(_block([], [{"method": "hybrid"}])) == {"status": "not compared"}


# ------------------------------------------------------------------ the audit (#37.6)
def _audit_inputs(base: dict[str, int], square_hits: int, n: int = 100):
    from robustlab.evaluation import EvalSettings
    from robustlab.evaluation.audit import AuditInputs, tolerance
    from robustlab.plugins import load_plugins

    load_plugins()  # the attack registry the checks read
    def mask(hits: int) -> torch.Tensor:
        return torch.arange(n) < hits

    return AuditInputs(
        model=torch.nn.Identity(), x=torch.zeros(n, 1, 8, 8), y=torch.zeros(n, dtype=torch.long),
        clean_pred=torch.zeros(n, dtype=torch.long),
        settings=EvalSettings(attacks=tuple(base), eps=1.0, audit_square_queries=10),
        base={k: mask(v) for k, v in base.items()}, curve=[], num_classes=10, surrogate=None,
        pgd_name="pgd", tol=tolerance(n),
        attack_acc=lambda name, eps, options=None: mask(square_hits))


def test_audit_never_compares_a_patch_with_a_full_image_attack():
    """`evaluate --attacks patch-local,patch-universal --eps 1` was FLAGGED (black_box): Square
    changes every pixel (0 %) while the patches change one window (18 % left): two threat
    models, no masking. And a patch's low accuracy hid a weak PGD from the comparison."""
    from robustlab.evaluation import audit
    from robustlab.evaluation.audit import black_box_check

    patches_only = black_box_check(_audit_inputs({"patch-local": 24, "patch-universal": 53}, 0))
    assert patches_only["status"] == "skipped" and "threat model" in patches_only["reason"]
    # PGD leaves 90 %, Square 10 %: a black-box attack stronger than PGD is a flag, whatever
    # a patch (its own threat model, 0 % here) does
    weak_pgd = black_box_check(_audit_inputs({"pgd": 90, "patch-local": 0}, 10))
    assert weak_pgd["status"] == "flag" and weak_pgd["values"]["white_box"] == pytest.approx(0.9)
    assert weak_pgd["values"]["white_box_attacks"] == ["pgd"]
    fine = black_box_check(_audit_inputs({"pgd": 20, "patch-local": 0}, 30))
    assert fine["status"] == "pass"
    assert audit.threat_model("patch-local") == "patch-local"
    assert audit.threat_model("pgd") == audit.EPS_BALL
