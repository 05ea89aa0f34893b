"""The docs describe the software as it is now (issue #33 item 8).

- docs/performance.md stays short (<= 150 lines) and every figure in it is tied to a date, a
  commit and the command that reproduces it. The convention: a figure (a table row holding a
  digit, or a line holding a decimal number, a percentage or an "Nx" ratio) must come after a
  line `Measured YYYY-MM-DD at commit HASH: `COMMAND`` ("as of commit" where the measured
  commit is unknown) in the same section (a section starts at a `#` heading).
- Each such line has a `current` record of the same date, commit and kind in
  bench/results/history.jsonl, the machine-readable history of measurements.
- The narrative of who measured what when stays out of docs/ and README.md (a deny-list).
- Relative links in README.md and docs/*.md point at files and headings that exist.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PERFORMANCE = ROOT / "docs" / "performance.md"
HISTORY = ROOT / "bench" / "results" / "history.jsonl"
MAX_LINES = 150

MEASURED = re.compile(
    r"^Measured (?P<date>\d{4}-\d{2}-\d{2}) (?P<ref>at|as of) commit (?P<commit>[0-9a-f]{7,40}): "
    r"`(?P<command>[^`]+)`")
FIGURE = re.compile(r"\d\.\d|\d ?%|\b\d+(?:\.\d+)?x\b")
HISTORY_FIELDS = {"date", "commit", "commit_ref", "command", "metric", "value", "unit",
                  "machine", "notes", "status"}

# Phrases of a lab notebook, not of a description of the software.
NARRATIVE = [
    r"\bthis session\b", r"\bsessions? \d+", r"\bwe measured\b", r"\bbefore this change\b",
    r"\bthe code before\b", r"\bthis host\b", r"\bin this sitting\b",
    r"\bhelper (?:session|engineer)s?\b", r"\bmethods engineer\b", r"\bno GPU (?:was )?lent\b",
    r"\(#\d+", r"\bissue #\d+", r"\bused to be\b", r"\bfixed since\b", r"\bsince rerun\b",
]


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        lines.append("" if fenced else line)
    return lines


def _is_figure(line: str) -> bool:
    if line.startswith("|"):
        return not re.fullmatch(r"[|\-: ]+", line) and bool(re.search(r"\d", line))
    return bool(FIGURE.search(line))


def _measured_lines() -> list[re.Match]:
    return [m for line in PERFORMANCE.read_text().splitlines() if (m := MEASURED.match(line))]


def _history() -> list[dict]:
    return [json.loads(line) for line in HISTORY.read_text().splitlines() if line.strip()]


def test_performance_md_is_at_most_150_lines():
    n = len(PERFORMANCE.read_text().splitlines())
    assert n <= MAX_LINES, (f"docs/performance.md has {n} lines, at most {MAX_LINES}: "
                            f"older figures go to {HISTORY.name}")


def test_every_figure_in_performance_md_follows_a_measured_line():
    undated, measured, section = [], False, ""
    for number, line in enumerate(_prose_lines(PERFORMANCE.read_text()), start=1):
        if line.startswith("#"):
            measured, section = False, line
        elif MEASURED.match(line):
            measured = True
        elif _is_figure(line) and not measured:
            undated.append(f"line {number} ({section}): {line[:70]}")
    assert not undated, "figures without a 'Measured DATE at commit HASH: `COMMAND`' line:\n" + \
        "\n".join(undated)


def test_measured_lines_name_a_real_date_and_a_bench_command():
    found = _measured_lines()
    assert len(found) >= 5
    for m in found:
        datetime.date.fromisoformat(m["date"])
        command = m["command"]
        script = re.search(r"bench/[\w./-]+", command)
        assert script or command.startswith("robustlab "), command
        if script:
            assert (ROOT / script.group(0)).is_file(), f"{script.group(0)} does not exist"


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs the git history")
def test_measured_commits_exist():
    commits = sorted({m["commit"] for m in _measured_lines()} | {r["commit"] for r in _history()})
    out = subprocess.run(["git", "cat-file", "--batch-check"], cwd=ROOT, check=True, text=True,
                         input="".join(f"{c}^{{commit}}\n" for c in commits),
                         capture_output=True, timeout=30).stdout
    missing = [line for line in out.splitlines() if line.endswith("missing")]
    assert not missing, missing


def test_history_is_machine_readable():
    records = _history()
    assert len(records) >= 50
    for i, record in enumerate(records, start=1):
        assert set(record) == HISTORY_FIELDS, f"history.jsonl line {i}: fields {sorted(record)}"
        datetime.date.fromisoformat(record["date"])
        assert re.fullmatch(r"[0-9a-f]{7,40}", record["commit"]), record
        assert record["commit_ref"] in ("measured", "as-of"), record
        assert record["status"] in ("current", "superseded"), record
        assert isinstance(record["value"], (int, float, list, dict)), record


def test_every_measured_line_has_a_current_history_record():
    current = {(r["date"], r["commit"], r["commit_ref"]) for r in _history()
               if r["status"] == "current"}
    for m in _measured_lines():
        key = (m["date"], m["commit"], "measured" if m["ref"] == "at" else "as-of")
        assert key in current, f"no current record in history.jsonl for {key}"


def _docs() -> list[Path]:
    return [ROOT / "README.md"] + sorted(
        p for p in (ROOT / "docs").rglob("*.md")
        if not (p.name == "report.md" and "results" in p.parts))  # generated reports


def test_no_lab_notebook_narrative_in_the_docs():
    hits = []
    for path in _docs():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            hits += [f"{path.relative_to(ROOT)}:{number}: {pattern!r} in {line.strip()[:80]}"
                     for pattern in NARRATIVE if re.search(pattern, line, re.IGNORECASE)]
    assert not hits, "say what is true now (history: bench/results/history.jsonl):\n" + \
        "\n".join(hits)


@pytest.mark.parametrize("line, figure", [
    ("| LeNet-5 | 0.60 | 1.10 |", True), ("|---|---|", False), ("ratio **1.32** here", True),
    ("7 % PGD-10", True), ("1.85x faster", True), ("2x2 max-pooling at 64 MB", False),
    ("| model | threads |", False)])
def test_figure_detection(line, figure):
    assert _is_figure(line) is figure


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.lstrip("#").strip().lower()).replace(" ", "-")


def test_relative_links_in_the_docs_resolve():
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f"{path.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in {
                    _slug(line) for line in dest.read_text().splitlines() if line.startswith("#")}:
                broken.append(f"{path.name}: {target} (no such heading)")
    assert not broken, broken
