"""The document model of every report, and its two renderers.

A report is built once as a list of blocks (headings, paragraphs, bullet lists, tables with
per-cell marks, figures) and rendered to Markdown and to a self-contained HTML page, so the two
never disagree.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from pathlib import Path

import pandas as pd

from xent_bench.reports.format import MISSING


@dataclasses.dataclass
class Heading:
    level: int
    text: str


@dataclasses.dataclass
class Para:
    text: str


@dataclasses.dataclass
class Bullets:
    items: list[str]


@dataclasses.dataclass
class Table:
    """Display text, plus an optional mark per cell: ``bad`` (an unexpected failure or a
    measurement problem), ``expected`` (a failure meant to happen) or ``warn`` (noisy)."""

    frame: pd.DataFrame
    marks: pd.DataFrame | None = None
    caption: str = ""
    left: int = 1  # leading columns aligned left (the rest are right-aligned)

    def mark(self, row: int, col: int) -> str:
        if self.marks is None:
            return ""
        return self.marks.iat[row, col] or ""


@dataclasses.dataclass
class Figure:
    path: Path
    caption: str


def make_table(rows: list[dict], marks: list[dict] | None = None, **kw) -> Table:
    """A Table from row dicts (text) and optional mark dicts with the same keys."""
    frame = pd.DataFrame(rows, dtype=object).fillna(MISSING).astype(str)
    mark_frame = None
    if marks is not None:
        mark_frame = pd.DataFrame([{c: m.get(c) or "" for c in frame.columns} for m in marks],
                                  columns=frame.columns, dtype=object)
    return Table(frame, mark_frame, **kw)



# Characters that Markdown would read as markup (emphasis, links, HTML, headings, tables,
# code): backslash-escaped in text that comes from a run folder, not from the report's code.
MARKDOWN_SPECIALS = "\\`*_[]<>#|"


def plain(text) -> str:
    """Free text read from a run folder (a note, a message) as one line of literal Markdown:
    line breaks and other control characters become spaces and markup characters are
    escaped, so that the text cannot start a heading, a table or an HTML tag of its own."""
    one_line = "".join(" " if ch.isspace() or not ch.isprintable() else ch for ch in str(text))
    return "".join("\\" + ch if ch in MARKDOWN_SPECIALS else ch for ch in one_line)


def _md_cell(text: str, mark: str) -> str:
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return f"**{text}**" if mark == "bad" and text != MISSING else text


def render_markdown(blocks: list) -> str:
    """The document as GitHub-flavoured Markdown."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            out.append(_md_table(b))
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}](plots/{b.path.name})")
    return "\n\n".join(out) + "\n"


def _md_table(t: Table) -> str:
    cols = list(t.frame.columns)
    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines.append("| " + " | ".join(_md_cell(c, "") for c in cols) + " |")
    lines.append("|" + "|".join(":---" if i < t.left else "---:" for i in range(len(cols))) + "|")
    for i in range(len(t.frame)):
        lines.append("| " + " | ".join(_md_cell(t.frame.iat[i, j], t.mark(i, j))
                                       for j in range(len(cols))) + " |")
    return "\n".join(lines)


# The page reads at a laptop's width and on a phone's (tests/xent_bench/reports/
# test_html_layout.py measures it in a headless browser at 1024 and 390 px): the page itself
# never scrolls sideways; a table wider than the page scrolls inside its own box
# (.table-wrap), with its caption outside that box so the caption wraps at the page's width;
# long words in prose (implementation ids in `code`) break rather than widen the page (a
# table cell keeps its min-content width: overflow-wrap break-word, not anywhere); images
# scale down. Cell padding is kept small so that a ranked timing table (15 columns) fits at
# 1024 px without scrolling, verdict included, for the default preset's implementation ids;
# text-size-adjust keeps phone browsers from enlarging the text beside a wide table.
CSS = """
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222;
       padding: 0 1em; line-height: 1.4; overflow-wrap: break-word; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.3em; text-align: right; }
th { background: #f0f0f0; } td.l, th.l { text-align: left; }
td.bad { background: #fde0e0; color: #b00000; font-weight: bold; }
td.expected { color: #777; font-style: italic; }
td.warn { background: #fff6d5; }
td.clean { background: #e8f0fe; }
span.nb { white-space: nowrap; }
figcaption { font-style: italic; padding: 0.3em 0; }
figure.table .table-wrap { margin: 0.3em 0 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
pre { overflow-x: auto; max-width: 100%; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; }
@media (max-width: 600px) {
  body { margin: 1em auto; padding: 0 0.75em; }
  h1 { font-size: 1.3em; } ul { padding-left: 1.2em; }
}
"""


def _markup(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)


def _inline(text: str) -> str:
    """Escape, then turn the Markdown we write (`code`, **bold**) into HTML; a backslash-escaped
    character (:func:`plain`) is that character, never markup."""
    pieces = re.split(r"\\([" + re.escape(MARKDOWN_SPECIALS) + r"])", str(text))
    return "".join(_markup(piece) if i % 2 == 0 else html.escape(piece)
                   for i, piece in enumerate(pieces))


# A number in exponent form (fmt_num writes 4.42e-04): a browser may break a line after its
# minus sign, which then reads as two numbers. A range such as (5.03x-6.21x) may break there.
_EXPONENT = re.compile(r"\d(?:\.\d+)?e-\d+")


def _number_cell(text: str) -> str:
    """A right-aligned (number) cell, escaped, with each number in exponent form kept on one
    line by a span: the markup changes, not the text."""
    return _EXPONENT.sub(lambda m: f'<span class="nb">{m.group(0)}</span>', html.escape(text))


def _html_table(t: Table) -> str:
    def cls(*names):
        names = [n for n in names if n]
        return f' class="{" ".join(names)}"' if names else ""

    def cell(i: int, j: int) -> str:
        text = str(t.frame.iat[i, j])
        inner = html.escape(text) if j < t.left else _number_cell(text)
        return f"<td{cls('l' if j < t.left else '', t.mark(i, j))}>{inner}</td>"

    cols = list(t.frame.columns)
    head = "".join(f"<th{cls('l' if j < t.left else '')}>{html.escape(str(c))}</th>"
                   for j, c in enumerate(cols))
    body = "\n".join("<tr>" + "".join(cell(i, j) for j in range(len(cols))) + "</tr>"
                     for i in range(len(t.frame)))
    table = (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n'
             f"</tbody></table></div>")
    if not t.caption:
        return table
    # The caption outside the scrolling box: inside <table> it would be as wide as the table.
    return f'<figure class="table"><figcaption>{_inline(t.caption)}</figcaption>{table}</figure>'


def _html_figure(f: Figure) -> str:
    data = base64.b64encode(Path(f.path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(f.caption)}">'
            f"<figcaption>{_inline(f.caption)}</figcaption></figure>")


def render_html(blocks: list, title: str) -> str:
    """The document as one self-contained HTML page."""
    out = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            out.append(_html_table(b))
        elif isinstance(b, Figure):
            out.append(_html_figure(b))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(out) + "\n</body></html>\n")
