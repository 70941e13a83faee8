"""Render one neutral list of blocks as Markdown and as self-contained HTML.

A block is a tuple: ("h1" | "h2" | "p", text), ("code", text) (shown verbatim),
("table", header, rows) or ("img", caption, path). Both renderers read the same blocks, so
the two reports always hold the same content.

The HTML reads on a narrow screen too: a viewport meta tag, images scaled to the page width,
tables scrolling sideways in a wrapper rather than widening the page, and numeric cells
right-aligned so that digits line up.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

Block = tuple

CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
    ".table-scroll{overflow-x:auto;max-width:100%}"
    "pre{background:#f6f6f6;padding:0.5em;overflow-x:auto;font-size:0.85em}"
    "img{max-width:100%;height:auto}figure{margin:1em 0}"
    ".headline{font-size:1.2em;background:#eef;padding:0.5em}"
    "@media (max-width:600px){body{margin:1em auto;padding:0 0.5em}}"
)

VIEWPORT = '<meta name="viewport" content="width=device-width, initial-scale=1">'

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?%?"
#: A number as the report prints one: "0.12", "9.5%", "1e-3", with an optional comparison in
#: front ("> 4", "<= 8", "~61"), an optional "x" after ("2.2x"), and an optional spread or
#: interval ("0.12 ± 0.01", "0.12 ± n/a", "0.51 [0.47, 0.54]", "0.51 (range 0.4 to 0.6)",
#: "3 / 3").
NUMERIC = re.compile(
    rf"(?:[<>]=?|[≤≥~≈])?\s*{_NUM}\s*[x×]?"
    rf"(?:\s*(?:±|\+/-)\s*(?:{_NUM}|n/a))?"
    rf"(?:\s*\[\s*{_NUM}\s*,\s*{_NUM}\s*\]|\s*\(range\s+{_NUM}\s+to\s+{_NUM}\))?"
    rf"(?:\s*/\s*{_NUM})?"
)


def _md_cell(text: str) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(blocks: list[Block]) -> str:
    """report.md: figures linked by file name (they sit next to it)."""
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h1":
            out.append(f"# {block[1]}")
        elif kind == "h2":
            out.append(f"## {block[1]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "headline":
            out.append(f"**{block[1]}**")
        elif kind == "code":
            fence = "~~~~" if "```" in block[1] else "```"
            out.append(f"{fence}\n{block[1].rstrip()}\n{fence}")
        elif kind == "table":
            out.append(_md_table(block[1], block[2]))
        elif kind == "img":
            out.append(f"![{block[1]}]({Path(block[2]).name})")
    return "\n\n".join(out) + "\n"


def is_numeric(text: object) -> bool:
    """True when a cell's text is a number, or a number with a comparison, an "x", a "±"
    spread or an interval (:data:`NUMERIC`): such cells are right-aligned."""
    text = str(text).strip()
    try:
        float(text)  # "nan" and "inf" are numbers too
        return True
    except ValueError:
        return bool(text) and NUMERIC.fullmatch(text) is not None


def _html_cell(cell: object) -> str:
    """One escaped table cell, class "num" (right-aligned) when it holds a number."""
    attr = ' class="num"' if is_numeric(cell) else ""
    return f"<td{attr}>{html.escape(str(cell))}</td>"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table with every cell escaped, in a wrapper that scrolls sideways on a narrow
    screen (a wide table would otherwise widen the whole page)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in rows)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="table-scroll">{table}</div>'


def _html_img(caption: str, path: Path) -> str:
    """A figure with the PNG embedded as a base64 data URI (no external resources; the SVG
    next to the PNG is for slides and is linked from nowhere)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = html.escape(caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{cap}">'
        f"<figcaption>{cap}</figcaption></figure>"
    )


def _html_block(block: Block) -> str:
    """One block as HTML."""
    kind = block[0]
    if kind in ("h1", "h2", "p"):
        return f"<{kind}>{html.escape(block[1])}</{kind}>"
    if kind == "headline":
        return f'<p class="headline"><strong>{html.escape(block[1])}</strong></p>'
    if kind == "code":
        return f"<pre>{html.escape(block[1])}</pre>"
    if kind == "table":
        return _html_table(block[1], block[2])
    if kind == "img":
        return _html_img(block[1], block[2])
    raise ValueError(f"unknown report block {kind!r}")


def to_html(blocks: list[Block], title: str) -> str:
    """report.html: one file, inline CSS, PNGs as data URIs, readable on a phone."""
    body = "\n".join(_html_block(b) for b in blocks)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{VIEWPORT}'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
