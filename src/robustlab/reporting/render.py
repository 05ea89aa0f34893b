"""Render a report, given as a list of blocks, to Markdown and to self-contained HTML.

Blocks: ("h1" | "h2" | "h3" | "p" | "note", text), ("table", headers, rows),
("img", png path, caption), ("list", items), ("toc",) (the h2/h3 headings as links; HTML
only).
A table cell is a string or a dict {"text", "hover"}: Markdown shows the text, HTML shows the
hover text as the cell's tooltip. Columns of numbers are right-aligned, text left-aligned.
Figures are embedded in the HTML as base64, so it opens offline; nothing external is loaded.
Each is shown at its own pixel size (`width` / `height` from its PNG header; never scaled up,
scaled down only where the window is narrower); a click shows it whole, at that size, over
the page (a CSS toggle: the report has no script), another click closes it.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

Block = tuple[Any, ...]

_CSS = """
:root{--fg:#1d1d22;--muted:#5a5a66;--line:#dcdce3;--head:#f3f3f7}
body{font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--fg);max-width:1180px;margin:0 auto;padding:1.5em 1.25em 4em}
h1{font-size:1.8em;line-height:1.25;margin:.3em 0 .6em}
h2{font-size:1.35em;margin:2.2em 0 .6em;padding-bottom:.25em;border-bottom:1px solid var(--line)}
h3{font-size:1.05em;margin:1.6em 0 .3em}
p,li{max-width:50em}
code{font:.88em ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f1f1f5;
padding:0 .25em;border-radius:3px}
.note{color:var(--muted);font-size:.92em}
nav.toc{background:var(--head);border:1px solid var(--line);border-radius:6px;
padding:.6em 1.2em;margin:1em 0 1.5em;font-size:.93em}
nav.toc ul{margin:.2em 0;padding-left:1.2em}nav.toc li.sub{margin-left:1.2em}
nav.toc a{color:#2550a0;text-decoration:none}
.scroll{overflow-x:auto;margin:.5em 0 1.2em;max-width:100%}
table{border-collapse:collapse;font-size:.88em}
th,td{padding:.3em .7em;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--head);border-bottom:2px solid #c5c5cf;font-weight:600}
tbody tr:nth-child(even){background:#fafafc}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.prose{min-width:16em;max-width:34em}td.key{white-space:nowrap}
td[title]{cursor:help}
figure{margin:1em 0 2em}figure img{display:block;max-width:100%;height:auto}
.zoom{display:block;position:relative;cursor:zoom-in}
.zoom input{position:absolute;top:0;left:0;opacity:0;pointer-events:none}
.zoom input:checked+.box{position:fixed;inset:0;z-index:10;overflow:auto;background:#fff;
padding:1em;cursor:zoom-out}
.zoom input:checked+.box img{max-width:none}
figcaption{color:var(--muted);font-size:.92em;margin-top:.4em;max-width:50em}
"""
# A cell is a number when it reads like one: 98.4, -1.5, 0.03, 4.38x, 98.4 ± 0.3 ⚠, n/a, -.
_NUMBER = re.compile(r"^([-+]?\d[\d,.]*(e[-+]?\d+)?x?( ± \d[\d.]*)?( ⚠)?|n/a|-)$")
_PROSE_CHARS = 40  # a column whose cells average more characters is prose (wraps, wider)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes, name: str = "figure") -> tuple[int, int]:
    """(width, height) in pixels from a PNG's header (its IHDR chunk comes first)."""
    if data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        raise ValueError(f"{name}: expected a PNG file, got {data[:8]!r}")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def cell_text(cell: Any) -> str:
    """The text of a table cell (a string, or a dict with `text`)."""
    return str(cell["text"]) if isinstance(cell, dict) else str(cell)


def column_kinds(rows: list[list[Any]], width: int) -> list[str]:
    """Per column: `num` (every cell a number, at least one not n/a), `prose` (long text:
    wraps in a wider cell) or `text`."""
    kinds = []
    for i in range(width):
        texts = [cell_text(r[i]) for r in rows if i < len(r)]
        numeric = texts and all(_NUMBER.match(t) for t in texts) and any(
            t not in ("n/a", "-") for t in texts)
        long = texts and sum(map(len, texts)) / len(texts) > _PROSE_CHARS
        kinds.append("num" if numeric else "prose" if long else "text")
    return kinds


def slug(text: str) -> str:
    """A heading's anchor (GitHub's rule: lower case, punctuation dropped, spaces to -)."""
    return re.sub(r"[^\w\- ]", "", text.lower()).strip().replace(" ", "-")


def _headings(blocks: list[Block]) -> list[tuple[str, str]]:
    return [(b[0], b[1]) for b in blocks if b[0] in ("h2", "h3")]


def to_markdown(blocks: list[Block], root: Path) -> str:
    """The report as GitHub Markdown (figures linked by their path relative to `root`)."""
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + f" {b[1]}\n")
        elif kind in ("p", "note"):
            out.append(f"{b[1]}\n")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in b[1]) + "\n")
        elif kind == "toc":  # HTML only: Markdown viewers list the headings themselves
            continue
        elif kind == "table":
            out.append(_md_table(b[1], b[2]))
        elif kind == "img":
            rel = Path(b[1]).relative_to(root)
            out.append(f"![{b[2]}]({rel.as_posix()})\n\n*{b[2]}*\n")
    return "\n".join(out)


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    kinds = column_kinds(rows, len(headers))
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if k == "num" else "---" for k in kinds) + "|"]
    lines += ["| " + " | ".join(cell_text(c).replace("|", "\\|") for c in row) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def to_html(blocks: list[Block], title: str) -> str:
    """The report as one self-contained HTML page."""
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
           f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        out.append(_html_block(b, blocks))
    out.append("</body></html>")
    return "\n".join(out)


def _html_block(b: Block, blocks: list[Block]) -> str:
    kind = b[0]
    if kind in ("h1", "h2", "h3"):
        return f"<{kind} id='{slug(b[1])}'>{_inline(b[1])}</{kind}>"
    if kind in ("p", "note"):
        return f"<p class='{kind}'>{_inline(b[1])}</p>"
    if kind == "list":
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>"
    if kind == "toc":
        sub = {"h2": "", "h3": " class='sub'"}
        items = "".join(f"<li{sub[k]}><a href='#{slug(t)}'>{_inline(t)}</a></li>"
                        for k, t in _headings(blocks))
        return f"<nav class='toc'><b>Contents</b><ul>{items}</ul></nav>"
    if kind == "table":
        return _html_table(b[1], b[2])
    if kind == "img":
        return _html_figure(Path(b[1]), b[2])
    raise ValueError(f"report block: unknown kind {kind!r}")


def _html_figure(path: Path, caption: str) -> str:
    """A figure at its natural pixel size (at most the page's width), click to see it whole."""
    raw = path.read_bytes()
    width, height = png_size(raw, str(path))
    data = base64.b64encode(raw).decode("ascii")
    return (f"<figure><label class='zoom' title='click: the whole figure at full size'>"
            f"<input type='checkbox'><span class='box'><img alt='{html.escape(caption)}' "
            f"width='{width}' height='{height}' src='data:image/png;base64,{data}'></span>"
            f"</label><figcaption>{_inline(caption)}</figcaption></figure>")


def _html_table(headers: list[str], rows: list[list[Any]]) -> str:
    kinds = column_kinds(rows, len(headers))
    if kinds and kinds[0] == "text":
        kinds[0] = "key"  # the row's name: kept on one line
    head = "".join(f"<th class='{k}'>{html.escape(str(h))}</th>"
                   for h, k in zip(headers, kinds, strict=True))
    body = []
    for row in rows:
        tds = []
        for cell, k in zip(row, kinds, strict=True):
            hover = cell.get("hover") if isinstance(cell, dict) else None
            title = f" title='{html.escape(hover)}'" if hover else ""
            tds.append(f"<td class='{k}'{title}>{_inline(cell_text(cell))}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _inline(text: str) -> str:
    """Escape, then render **bold** and `code` spans (the only Markdown the report uses)."""
    t = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        parts = t.split(mark)
        if len(parts) % 2 == 1:
            t = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
    return t
