"""Render a report, given as a list of blocks, to Markdown and to self-contained HTML.

Blocks: ("h1" | "h2" | "p", text), ("table", headers, rows), ("img", png path, caption),
("list", items). Figures are embedded in the HTML as base64, so it opens offline.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

Block = tuple[Any, ...]

_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid
#ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{
text-align:left}img{max-width:100%;border:1px solid #eee}.caption{color:#555;font-size:0.9em}
"""


def to_markdown(blocks: list[Block], root: Path) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}\n")
        elif kind == "h2":
            out.append(f"## {b[1]}\n")
        elif kind == "p":
            out.append(f"{b[1]}\n")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in b[1]) + "\n")
        elif kind == "table":
            headers, rows = b[1], b[2]
            lines = ["| " + " | ".join(headers) + " |",
                     "|" + "|".join("---" for _ in headers) + "|"]
            lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
                      for row in rows]
            out.append("\n".join(lines) + "\n")
        elif kind == "img":
            rel = Path(b[1]).relative_to(root)
            out.append(f"![{b[2]}]({rel.as_posix()})\n\n*{b[2]}*\n")
    return "\n".join(out)


def to_html(blocks: list[Block], title: str) -> str:
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{html.escape(b[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row)
                           + "</tr>" for row in b[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode(Path(b[1]).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(b[2])}' "
                       f"src='data:image/png;base64,{data}'><figcaption class='caption'>"
                       f"{html.escape(b[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then render **bold** and `code` spans (the only Markdown the report uses)."""
    t = html.escape(text)
    for mark, tag in (("**", "b"), ("`", "code")):
        parts = t.split(mark)
        if len(parts) % 2 == 1:
            t = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
    return t
