"""report.html rendered in headless Chromium: the screenshot is not blank, every figure loads
and fits the page, nothing widens the page. Skips when Chromium is absent (the Makefile and
CI install Debian's `chromium`: scripts/install-chromium.sh) but fails instead when
ROBUSTLAB_REQUIRE_CHROMIUM=1 (as .ci/run sets)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_report import _as_experiment, _fake_eval

from robustlab.reporting import write_report

# Flags that work in a container as root with no network (without the background-networking
# ones Chromium waits on refused connections).
pytestmark = pytest.mark.integration  # headless Chromium in a subprocess

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--disable-extensions")
# Appended to a copy of report.html (never to the report): writes the layout into the DOM.
MEASURE = """<script>addEventListener('load', () => {
  const vw = document.documentElement.clientWidth;
  const box = e => { const r = e.getBoundingClientRect(); return {left: r.left, right: r.right,
    width: r.width, height: r.height}; };
  const figs = [...document.querySelectorAll('figure img')].map(
    img => ({...box(img), natural: img.naturalWidth, complete: img.complete}));
  const out = {vw, scrollWidth: document.documentElement.scrollWidth, figs,
    tables: [...document.querySelectorAll('.scroll')].map(box),
    text: document.body.innerText.length};
  const pre = document.createElement('pre'); pre.id = 'rl-measure';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});</script>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.environ.get("ROBUSTLAB_REQUIRE_CHROMIUM") == "1":
        pytest.fail("chromium not found (ROBUSTLAB_REQUIRE_CHROMIUM=1): run "
                    "scripts/install-chromium.sh or `apt-get install chromium`")
    pytest.skip("chromium not installed (scripts/install-chromium.sh installs it)")


def _run(exe: str, *args: str) -> str:
    """Run headless Chromium with a fresh profile; return its stdout."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    numbers = {"standard": (0.99, 0.01), "pgd-at": (0.97, 0.40), "trades": (0.96, 0.45),
               "hybrid": (0.98, 0.80)}
    for method, (clean, adv) in numbers.items():
        for seed in (0, 1):
            run = root / "runs" / f"{method}-s{seed}"
            run.mkdir(parents=True)
            data = _fake_eval(method, seed, 0.3, clean - 0.01 * seed, adv + 0.01 * seed)
            (run / "eval.json").write_text(json.dumps(data))
    _as_experiment(root)
    return write_report(root)["html"]


def _layout(exe: str, page: Path, width: int) -> dict:
    probe = page.with_name(f"probe-{width}.html")
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = _run(exe, f"--window-size={width},1000", "--virtual-time-budget=10000",
               "--dump-dom", probe.as_uri())
    found = re.search(r"<pre id=\"rl-measure\">(.*?)</pre>", dom, re.S)
    assert found, f"the measuring script did not run; DOM starts {dom[:300]!r}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize("width", [1280, 800])
def test_figures_fit_and_nothing_widens_the_page(report, width):
    exe = _chromium()
    m = _layout(exe, report, width)
    figures = len(list((report.parent / "figures").glob("*.png")))
    assert figures and len(m["figs"]) == figures
    assert m["text"] > 2000
    assert m["scrollWidth"] <= m["vw"], "the page scrolls sideways"
    for f in m["figs"]:
        assert f["complete"] and f["natural"] > 400, "a figure did not load"
        assert f["left"] >= 0 and f["right"] <= m["vw"] + 0.5, f"figure overflows: {f}"
        # at its own pixel size, never stretched; scaled down only to the column's width
        assert f["width"] <= f["natural"] + 0.5, f"figure stretched: {f}"
        assert f["width"] >= min(f["natural"], 0.8 * min(m["vw"], 1180) - 60), f"shrunk: {f}"
    for t in m["tables"]:
        assert t["right"] <= m["vw"] + 0.5, f"table overflows: {t}"


def test_screenshot_is_not_blank(report, tmp_path):
    from PIL import Image, ImageStat

    exe = _chromium()
    shot = tmp_path / "report.png"
    _run(exe, "--window-size=1280,2400", f"--screenshot={shot}", report.as_uri())
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        gray = im.convert("L")
        dark = sum(gray.histogram()[:160]) / (im.size[0] * im.size[1])
        colours = len(im.convert("RGB").getcolors(1 << 20) or [])
        spread = ImageStat.Stat(gray).stddev[0]
    assert dark > 0.01, f"only {dark:.2%} of the screenshot is text or lines"
    assert colours > 50 and spread > 10, (colours, spread)


def test_the_probe_sees_an_overflowing_figure(report, tmp_path):
    """The layout check fails a page whose figure is wider than the window."""
    exe = _chromium()
    png = next((report.parent / "figures").glob("*.png"))
    page = tmp_path / "wide.html"
    page.write_text(f"<!DOCTYPE html><html><body><figure><img style='width:2000px' "
                    f"src='{png.as_uri()}'></figure></body></html>")
    m = _layout(exe, page, 1000)
    assert m["figs"][0]["right"] > m["vw"] and m["scrollWidth"] > m["vw"]


def test_missing_chromium_skips_or_fails_when_required(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("ROBUSTLAB_REQUIRE_CHROMIUM", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium not installed"):
        _chromium()
    monkeypatch.setenv("ROBUSTLAB_REQUIRE_CHROMIUM", "1")
    with pytest.raises(pytest.fail.Exception, match="ROBUSTLAB_REQUIRE_CHROMIUM=1"):
        _chromium()
