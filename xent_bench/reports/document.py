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


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222;
       padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.l, th.l { text-align: left; }
td.bad { background: #fde0e0; color: #b00000; font-weight: bold; }
td.expected { color: #777; font-style: italic; }
td.warn { background: #fff6d5; }
td.clean { background: #e8f0fe; }
caption { caption-side: top; text-align: left; font-style: italic; padding: 0.3em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
figure { margin: 1em 0; } img { max-width: 100%; }
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


def _html_table(t: Table) -> str:
    def cls(*names):
        names = [n for n in names if n]
        return f' class="{" ".join(names)}"' if names else ""

    cols = list(t.frame.columns)
    head = "".join(f"<th{cls('l' if j < t.left else '')}>{html.escape(str(c))}</th>"
                   for j, c in enumerate(cols))
    body = "\n".join(
        "<tr>" + "".join(f"<td{cls('l' if j < t.left else '', t.mark(i, j))}>"
                         f"{html.escape(str(t.frame.iat[i, j]))}</td>" for j in range(len(cols)))
        + "</tr>" for i in range(len(t.frame)))
    caption = f"<caption>{_inline(t.caption)}</caption>" if t.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


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
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(out) + "\n</body></html>\n")
