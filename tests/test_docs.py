"""The README and ``docs/`` pages against the runs they quote.

Every figure block a page quotes from a run sits between ``<!-- excerpt: SOURCE -->`` and
``<!-- /excerpt -->``. SOURCE is ``RUN_ID FILE`` (``FILE`` one of ``report.md``,
``behaviour.md``, ``distributed.md``, or ``summary``: what ``xent-bench report`` prints) or
``compare BASE_ID NEW_ID`` (``comparison.md``), ``merge RUN_ID RUN_ID ...`` (``merge.md``) or
``stability QUIET LOADED QUIET_AGAIN SLOWED
IMPL FACTOR`` (``stability.md``). The records of each quoted run are committed
under ``docs/runs/RUN_ID/`` (``meta.json`` and ``records.jsonl.gz``); these tests rebuild the
run's reports from them with today's code and check that the excerpt is still what the reports
say: its tables' rows (on the columns it shows) and its other lines, in order.

A changed report format makes these tests fail until the pages are regenerated from the same
runs (``docs/runs/README.md``); changed figures need a new run, never an edit by hand.
"""

from __future__ import annotations

import gzip
import re
import shlex
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

from xent_bench import cli  # noqa: E402
from xent_bench.reports import run_report, stability_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "runs"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXCERPT = re.compile(r"<!-- excerpt: (?P<source>[^>]+?) -->\n(?P<body>.*?)\n<!-- /excerpt -->",
                     re.S)
RUN_ID = re.compile(r"\d{8}-\d{6}-[a-z]+-[0-9a-f]{6}")
# Pages of findings: each must quote at least one run through an excerpt.
FINDINGS = ("agreement.md", "behaviour.md", "fused.md", "distributed.md", "comparing.md",
            "timing-report.md", "stability.md")


def excerpts() -> list[tuple[str, str, str]]:
    """(page, source, body) of every excerpt of every page."""
    found = []
    for page in PAGES:
        for m in EXCERPT.finditer(page.read_text()):
            found.append((page.name, m["source"].strip(), m["body"]))
    return found


# --- markdown tables -----------------------------------------------------------------------

def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def split_blocks(text: str) -> tuple[list[list[dict]], list[str]]:
    """The tables of a Markdown text (each a list of {column: cell}) and its other non-blank
    lines."""
    tables, lines, rows = [], [], None
    text_lines = text.splitlines()
    for i, line in enumerate(text_lines):
        stripped = line.strip()
        is_rule = re.fullmatch(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?", stripped) is not None
        if stripped.startswith("|") and not is_rule:
            nxt = text_lines[i + 1].strip() if i + 1 < len(text_lines) else ""
            if rows is None:  # a header: the next line is the rule
                if re.fullmatch(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?", nxt):
                    header, rows = _cells(line), []
                    tables.append(rows)
                    continue
                lines.append(stripped)
                continue
            rows.append(dict(zip(header, _cells(line), strict=False)))
        elif is_rule and rows is not None:
            continue
        else:
            rows = None
            if stripped and not stripped.startswith("```"):  # fences are the page's, not the run's
                lines.append(stripped)
    return tables, lines


def _table_found(excerpt: list[dict], tables: list[list[dict]]) -> bool:
    """Whether some table holds every row of ``excerpt`` (on the excerpt's columns), in order."""
    if not excerpt:
        return True
    columns = list(excerpt[0])
    for table in tables:
        if not table or not set(columns) <= set(table[0]):
            continue
        position = 0
        for row in excerpt:
            while position < len(table) and any(table[position].get(c) != row[c]
                                                for c in columns):
                position += 1
            if position == len(table):
                break
            position += 1
        else:
            return True
    return False


def missing_from(excerpt: str, generated: str) -> list[str]:
    """What of ``excerpt`` the generated text does not hold: table rows not found (on the
    excerpt's columns) and lines not found in order."""
    ex_tables, ex_lines = split_blocks(excerpt)
    gen_tables, gen_lines = split_blocks(generated)
    missing = []
    for table in ex_tables:
        if _table_found(table, gen_tables):
            continue
        # name the rows no generated table holds (or, if each is somewhere, the order)
        alone = [row for row in table if not _table_found([row], gen_tables)]
        missing.append(f"table with columns {list(table[0])}: "
                       + (f"rows not found {alone}" if alone else "rows out of order"))
    position = 0
    for line in ex_lines:
        while position < len(gen_lines) and gen_lines[position] != line:
            position += 1
        if position == len(gen_lines):
            missing.append(line)
            position = 0
        else:
            position += 1
    return missing


def test_missing_from_sees_a_changed_cell_and_a_changed_line():
    generated = ("Fastest: a 1.0 ms\n\n| impl | ms | verdict |\n|:--|--:|--:|\n"
                 "| a | 1.0 | pass |\n| b | 2.0 | fail |\n")
    assert missing_from("| impl | ms |\n|:--|--:|\n| b | 2.0 |", generated) == []
    assert missing_from("Fastest: a 1.0 ms", generated) == []
    assert missing_from("| impl | ms |\n|:--|--:|\n| b | 2.5 |", generated)
    assert missing_from("| impl | GB/s |\n|:--|--:|\n| b | 2.0 |", generated)
    assert missing_from("Fastest: a 1.1 ms", generated) == ["Fastest: a 1.1 ms"]
    # order counts: rows quoted out of their order are not the report's table
    assert missing_from("| impl | ms |\n|:--|--:|\n| b | 2.0 |\n| a | 1.0 |", generated)


# --- rebuilding the quoted runs -------------------------------------------------------------

def restore_run(run_id: str, into: Path) -> Path:
    """A run folder in ``into`` from the committed records of ``run_id``."""
    source = RUNS / run_id
    if not (source / "meta.json").is_file():
        pytest.fail(f"docs quote run {run_id}, but docs/runs/{run_id}/meta.json is not committed")
    run_dir = into / run_id
    if not run_dir.exists():
        run_dir.mkdir(parents=True)
        shutil.copy(source / "meta.json", run_dir / "meta.json")
        with gzip.open(source / "records.jsonl.gz", "rb") as fin, \
                open(run_dir / "records.jsonl", "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return run_dir


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """SOURCE -> the text today's code generates for it, built once per module."""
    root = tmp_path_factory.mktemp("docs-runs")
    cache: dict[str, str] = {}

    def build(source: str) -> str:
        if source in cache:
            return cache[source]
        words = source.split()
        if words[0] == "compare" and len(words) == 3:
            base, new = (restore_run(w, root) for w in words[1:])
            out = root / f"compare-{words[1]}-{words[2]}"
            # what `xent-bench compare BASE NEW --out OUT` writes (exit 1 on a regression)
            assert cli.main(["compare", str(base), str(new), "--out", str(out)]) in (0, 1)
            text = (out / "comparison.md").read_text()
        elif words[0] == "merge" and len(words) >= 3:
            runs = [str(restore_run(w, root)) for w in words[1:]]
            out = root / ("merge-" + "-".join(words[1:]))
            assert cli.main(["merge", *runs, "--out", str(out)]) == 0
            text = (out / "merge.md").read_text()
        elif words[0] == "stability" and len(words) == 7:
            runs = [restore_run(w, root) for w in words[1:5]]
            summary = stability_report.summarise(*runs, words[5], float(words[6]))
            text = stability_report.write(summary, root / f"stability-{words[1]}").read_text()
        elif len(words) == 2:
            run_dir = restore_run(words[0], root)
            marker = run_dir / ".built"
            if not marker.exists():
                written = run_report.write_run_reports(run_report.load_run(run_dir))
                # what `xent-bench run` / `report` prints at the end, the report's path as a
                # run under results/ gives it
                printed = [*written["summary"],
                           f"report: results/{words[0]}/report.md (also report.html)"]
                (run_dir / "summary").write_text("\n".join(printed) + "\n")
                marker.touch()
            text = (run_dir / words[1]).read_text()
        else:
            pytest.fail(f"an excerpt's source {source!r} is neither 'RUN_ID FILE' nor "
                        "'compare BASE NEW'")
        cache[source] = text
        return text

    return build


@pytest.mark.parametrize(("page", "source", "body"), excerpts(),
                         ids=lambda v: v if isinstance(v, str) and len(v) < 60 else "")
def test_an_excerpt_is_what_todays_reports_say_of_its_run(page, source, body, generated):
    missing = missing_from(body, generated(source))
    assert not missing, f"{page}: the excerpt of {source} no longer matches: {missing[:3]}"


def test_every_findings_page_quotes_a_run_it_is_checked_against():
    quoted = {page for page, _, _ in excerpts()}
    assert set(FINDINGS) <= quoted, f"pages with no checked excerpt: {set(FINDINGS) - quoted}"


def test_committed_runs_are_all_quoted():
    """Nothing is committed under docs/runs that no page quotes."""
    quoted = {w for _, source, _ in excerpts() for w in source.split() if RUN_ID.fullmatch(w)}
    committed = {p.name for p in RUNS.iterdir() if p.is_dir()}
    assert committed == quoted


# --- links and commands ---------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_lead_to_files(page):
    broken = [target for target, _ in LINK.findall(page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert not broken, f"{page.name}: links to missing files: {broken}"


def quoted_commands() -> list[tuple[str, str]]:
    """(page, command) of each ``xent-bench ...`` line in the pages' bash blocks, without
    shell variables or placeholders."""
    commands = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("#", 1)[0].strip()
                if "xent-bench " not in line or "$" in line or "<" in line:
                    continue
                command = line[line.index("xent-bench "):].split("&&")[0].split("|")[0]
                commands.append((page.name, command.strip()))
    return commands


@pytest.mark.parametrize(("page", "command"), quoted_commands())
def test_a_quoted_command_is_accepted_by_todays_parser(page, command):
    argv = shlex.split(command)[1:]
    try:
        cli.build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{page}: `{command}` is refused by the parser (exit {exit_.code})")
