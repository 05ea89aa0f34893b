"""Report figures from hand-built records: style cycle, layout (legend never over a panel),
integer epoch ticks, seeds aggregated, attacks taken from the records, captions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from robustlab.reporting import fig_accuracy, fig_training, figures, plot_style  # noqa: E402
from robustlab.reporting.collect import METHOD_ORDER  # noqa: E402
from robustlab.reporting.tables import groups  # noqa: E402

METHODS = METHOD_ORDER[:13]


def _rec(method: str, seed: int = 0, *, dataset: str = "mnist", protocol: str = "paper",
         eps: float = 0.3, clean: float = 0.9, worst: float = 0.5, epochs: int = 1,
         curve_n: int = 50, n: int = 100, **extra) -> dict:
    """A record with the fields `collect.record_from_eval` gives the figures."""
    correct = "1" * int(10 * worst) + "0" * (10 - int(10 * worst))
    rec = {
        "run": f"{method}-s{seed}", "run_dir": f"runs/{dataset}-{protocol}-{method}-s{seed}",
        "dataset": dataset, "method": method, "seed": seed, "protocol": protocol,
        "label": protocol, "eps": eps, "norm": "linf", "n": n, "train_eps": eps,
        "health": "ok", "flagged": False, "clean": clean, "fgsm": worst + 0.1,
        "pgd": worst + 0.05, "cw": worst + 0.02, "cw_attack": "cw-linf",
        "autoattack": worst, "worst": worst, "curve_n": curve_n,
        "_curve": [{"eps": eps * f, "acc": clean - f * (clean - worst), "n": curve_n}
                   for f in (0.0, 0.5, 1.0)],
        "_pgd_confidence": [0.9 - 0.05 * i for i in range(10)], "_pgd_correct": correct,
        "_metrics": [{"epoch": e, "val_acc": clean - 0.1 / e, "eps": eps,
                      **({"alpha": 0.5 - 0.05 * e} if method.startswith("hybrid") else {})}
                     for e in range(1, epochs + 1)],
    }
    rec.update(extra)
    return rec


def _paper_like() -> list[dict]:
    """13 methods x 2 datasets x 2 protocols, one seed, 4 epochs (like the paper-cpu run)."""
    return [_rec(m, dataset=d, protocol=p, eps=0.03 if p == "paper" else 0.3,
                 clean=0.95 - 0.01 * i, worst=0.3 + 0.04 * i, epochs=4)
            for d in ("mnist", "fashion-mnist") for p in ("paper", "recipe")
            for i, m in enumerate(METHODS)]


def _legend_clear_of_axes(fig) -> None:
    """The figure legend's box meets no panel (tick labels and titles included)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert len(fig.legends) == 1
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_tightbbox(renderer)), ax.get_title()


def test_style_cycle_keeps_15_plus_methods_apart():
    styles = [plot_style.style_at(i) for i in range(49)]
    assert len({(s["color"], s["marker"]) for s in styles}) == 49
    for i, a in enumerate(styles[:21]):  # two methods with one colour differ in every other way
        for b in styles[i + 1:21]:
            if a["color"] == b["color"]:
                assert a["marker"] != b["marker"] and a["linestyle"] != b["linestyle"]
    smap = plot_style.style_map(["mix", "standard", "my-method", "hybrid"])
    assert list(smap) == ["standard", "hybrid", "mix", "my-method"]
    assert smap["standard"] == plot_style.style_at(0)
    assert plot_style.method_style("hybrid", smap) == smap["hybrid"]
    assert plot_style.method_style("pgd-at") == plot_style.style_at(1)  # no map: METHOD_ORDER
    assert plot_style.method_style("unknown-x") == plot_style.method_style("unknown-x")


@pytest.mark.parametrize("draw", ["bars", "curves", "tradeoff", "training", "confidence"])
def test_legend_never_over_a_panel_with_13_methods(draw):
    recs = _paper_like()
    gs, head = groups(recs), {k: v for k, v in groups(recs).items() if k[0] == "mnist"}
    fig = {"bars": lambda: fig_accuracy.attack_bars_figure(head),
           "curves": lambda: fig_accuracy.curve_figure(gs),
           "tradeoff": lambda: fig_accuracy.tradeoff_figure(gs),
           "training": lambda: fig_training.training_figure(recs),
           "confidence": lambda: figures.confidence_figure(recs, "mnist")}[draw]()
    try:
        _legend_clear_of_axes(fig)
        rows = {round(ax.get_position().y0, 3) for ax in fig.axes}
        assert len(fig.axes) / len(rows) <= 3  # the grid wraps: at most 3 panels a row
        labels = fig.legends[0].get_texts()
        if draw in ("curves", "tradeoff", "training"):
            assert [t.get_text() for t in labels] == list(METHODS)  # one entry per method
    finally:
        plt.close(fig)


def test_a_method_flagged_in_one_panel_only_has_one_legend_entry():
    """Figures 3 and 5 of a report listed `fgsm-rs` and `fgsm-rs ⚠` when the audit flagged
    the method in one block only."""
    recs = [_rec(m, protocol=p, flagged=(m == "pgd-at" and p == "recipe"))
            for p in ("paper", "recipe") for m in ("standard", "pgd-at")]
    fig = fig_accuracy.tradeoff_figure(groups(recs))
    try:
        assert [t.get_text() for t in fig.legends[0].get_texts()] == ["standard", "pgd-at ⚠"]
    finally:
        plt.close(fig)


def test_one_epoch_gets_one_integer_tick():
    fig = fig_training.training_figure([_rec("hybrid", epochs=1), _rec("standard", epochs=1)])
    try:
        for ax in fig.axes:
            assert list(ax.get_xticks()) == [1.0]
            lo, hi = ax.get_xlim()
            assert lo < 1 < hi and hi - lo == pytest.approx(1.0)
    finally:
        plt.close(fig)
    ax = plt.figure().add_subplot()
    plot_style.epoch_axis(ax, range(1, 31))
    assert all(float(t).is_integer() for t in ax.get_xticks())
    plt.close(ax.figure)


def test_seeds_are_aggregated_with_error_bars_and_bands():
    recs = [_rec(m, s, clean=0.9 - 0.02 * s, worst=0.4 + 0.05 * s)
            for m in ("standard", "hybrid") for s in (0, 1, 2)]
    gs = groups(recs)
    curves, scatter = fig_accuracy.curve_figure(gs), fig_accuracy.tradeoff_figure(gs)
    try:
        (ax,) = curves.axes
        assert len([ln for ln in ax.lines if ln.get_label() in ("standard", "hybrid")]) == 2
        assert len(ax.collections) == 2  # one std band per method
        mean = [ln for ln in ax.lines if ln.get_label() == "hybrid"][0].get_ydata()
        assert mean[0] == pytest.approx(88.0) and mean[-1] == pytest.approx(45.0)
        (ax,) = scatter.axes
        assert len(ax.containers) == 2  # one point (with error bars) per method
        bar = ax.containers[1]
        assert bar.has_xerr and bar.has_yerr
        x, y = bar.lines[0].get_data()
        assert (x[0], y[0]) == (pytest.approx(88.0), pytest.approx(45.0))
    finally:
        plt.close(curves)
        plt.close(scatter)


def test_attack_bars_follow_the_attacks_in_the_records():
    recs = [_rec("standard", attack_acc={"pgd": 0.2, "square": 0.4}),
            _rec("hybrid", attack_acc={"pgd": 0.6, "square": None, "fab": 0.7})]
    assert fig_accuracy.attack_accuracies(recs[1]) == {"PGD": 0.6, "FAB": 0.7}
    assert fig_accuracy.attack_accuracies(_rec("pgd-at")) == {
        "FGSM": pytest.approx(0.6), "PGD": pytest.approx(0.55), "CW-Linf": pytest.approx(0.52),
        "AutoAttack": 0.5}
    fig = fig_accuracy.attack_bars_figure(groups(recs))
    try:
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert labels == ["clean", "PGD", "Square", "FAB", "worst case"]
        (ax,) = fig.axes
        assert len(ax.patches) == 2 * len(labels)
        assert "n/a" in [t.get_text() for t in ax.texts]  # standard has no FAB, hybrid no square
        _legend_clear_of_axes(fig)
    finally:
        plt.close(fig)
    assert fig_accuracy.attack_bars_figure(groups([_rec("x", attack_acc={})])) is None


def test_draw_all_writes_readable_pngs_with_captions(tmp_path):
    figdir = tmp_path / "figures"
    figdir.mkdir()
    from PIL.PngImagePlugin import PngInfo

    tag = PngInfo()
    tag.add_text("Software", "robustlab report")
    Image.new("L", (4, 4)).save(figdir / "fig2_methods_pgd.png", pnginfo=tag)  # an earlier report's
    (figdir / "notes.png").write_bytes(b"mine")
    recs = _paper_like() + [_rec("pgd-at", 1, health="collapsed", run_dir="runs/bad")]
    out = figures.draw_all(recs, figdir, "mnist")
    assert [p.name for p, _ in out] == list(figures.FILES)
    assert sorted(p.name for p in figdir.iterdir()) == sorted([*figures.FILES, "notes.png"])
    for i, (path, caption) in enumerate(out, 1):
        assert caption.startswith(f"Figure {i}:")
        assert "1 seed (0)" in caption and "did not learn" in caption
        with Image.open(path) as im:
            assert 600 < im.size[0] < 1800 and 300 < im.size[1] < 2000
            grey = np.asarray(im.convert("L"), dtype=float)
        assert (grey < 200).mean() > 0.02  # not blank
    for _, caption in out[:3] + out[4:]:
        assert "n = 100 test images" in caption and "no error bars" in caption
    assert "first 50 of the 100 test images" in out[2][1]
    assert "mnist linf eps 0.03 (paper), 0.3 (recipe)" in out[4][1]


def test_nothing_to_draw_gives_none_and_removes_the_old_file(tmp_path):
    recs = [_rec("standard", _curve=[], _metrics=[], _pgd_confidence=None, curve_n=100)]
    from PIL.PngImagePlugin import PngInfo

    tag = PngInfo()
    tag.add_text("Software", "robustlab report")  # what every report figure carries
    Image.new("L", (4, 4)).save(tmp_path / "fig3_accuracy_vs_eps.png", pnginfo=tag)
    (tmp_path / "fig9_mine.png").write_bytes(b"a user's file of a figure's name")
    (tmp_path / ".fig2_attacks.png.abc123.tmp").write_bytes(b"a killed write")
    out = dict((name, path) for name, (path, _) in zip(figures.FILES, figures.draw_all(
        recs, tmp_path, "mnist"), strict=True))
    assert out["fig1_confidence_pgd.png"] is None and out["fig3_accuracy_vs_eps.png"] is None
    assert out["fig4_training.png"] is None
    assert out["fig2_attacks.png"].is_file() and out["fig5_tradeoff.png"].is_file()
    assert not (tmp_path / "fig3_accuracy_vs_eps.png").exists()
    assert (tmp_path / "fig9_mine.png").exists()  # untagged: not the report's, kept
    assert not list(tmp_path.glob(".*.tmp"))
    assert figures.draw_all([_rec("standard", health="collapsed")], tmp_path / "f", None)[1][0] \
        is None  # a model that did not learn is never drawn


def test_caption_facts():
    recs = [_rec("hybrid", s, n=1000, curve_n=1000) for s in (0, 1, 2)]
    assert figures.describe(recs) == "n = 1000 test images per model, 3 seeds (0, 1, 2): " \
                                     "mean ± one std"
    assert figures.curve_note(groups(recs)) == " Curves on all 1000 test images."
    assert figures.curve_note(groups([_rec("x", _curve=[])])) == ""
    old = _rec("x", curve_n=20)
    del old["curve_n"]  # a record from before collect gave curve_n: the points say
    assert "first 20 of the 100 test images" in figures.curve_note(groups([old]))
    assert "⚠" in figures.notes([_rec("trades", flagged=True)])
    assert figures.notes(recs) == ""


def test_dodge_and_widen():
    same = {"a": {1: 0.1, 2: 0.3}, "b": {1: 0.1, 2: 0.3}, "c": {1: 0.2, 2: 0.3}}
    shift = fig_training.dodge(same)
    assert shift["c"] == 0 and shift["a"] == pytest.approx(-shift["b"]) and shift["a"] != 0
    many = fig_training.dodge({str(i): {1: 0.0} for i in range(11)})
    assert max(many.values()) - min(many.values()) == pytest.approx(0.5)
    ax = plt.figure().add_subplot()
    ax.plot([99.5, 99.6], [1.0, 1.1], "o")
    fig_accuracy.widen(ax, span=10.0)
    assert ax.get_xlim() == pytest.approx((91.0, 101.0))  # 10 points wide, not past 101
    assert ax.get_ylim() == pytest.approx((-1.0, 9.0))
    ax.set_xlim(20, 60)
    fig_accuracy.widen(ax, span=10.0)
    assert ax.get_xlim() == (20, 60)  # wide enough already
    plt.close(ax.figure)
