"""Reports built from synthetic run folders (real schema, no framework imported)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from xent_bench.analysis.run import load_run, tidy
from xent_bench.harness import floor
from xent_bench.harness.records import Record, append_record, load_records
from xent_bench.reports import format as fmt
from xent_bench.reports import run_report as report

CEILINGS = {"copy_GBps": 20.0, "read_GBps": 25.0, "exp_Gps": 1.0}


def _env(framework: str) -> dict:
    return {"cpu_model": "Test CPU", "git_commit": "abc123", "device": "cpu",
            "versions": {framework: "9.9"}, "device_name": "cpu", "threads": 2,
            "threads_applied": f"{framework}: 2 threads", "sync": f"{framework} sync",
            "allocator": "default"}


def _cell(kind: str, impl: str, n: int, c: int, dtype: str, pass_: str, scale: float = 1.0) -> dict:
    framework, variant, form = impl.split("/")
    return {"kind": kind, "impl": impl, "framework": framework, "form": form, "variant": variant,
            "n": n, "c": c, "dtype": dtype, "scale": scale, "seed": 0, "pass": pass_,
            "device": "cpu"}


def _record(cell: dict, metrics: dict, *, status: str = "ok", error: str | None = None,
            raw: dict | None = None, labels: dict | None = None) -> Record:
    return Record(run_id="run-1", cell=cell, env=_env(cell["framework"]), status=status,
                  metrics=metrics, labels=labels or {}, raw=raw or {}, error=error)


def _timing(impl: str, pass_: str, median_ms: float, *, c: int = 1000,
            noisy: bool = False) -> Record:
    """An ok timing record whose rounds have the given median (and a 30% IQR when noisy)."""
    cell = _cell("timing", impl, 256, c, "float32", pass_)
    median = median_ms / 1e3
    spread = 0.15 if noisy else 0.01
    times = [median * (1 - spread), median, median * (1 + spread)] * 3
    summary = {"median_s": median, "q1_s": median * (1 - spread), "q3_s": median * (1 + spread),
               "min_s": min(times), "iqr_rel": 2 * spread, "noisy": float(noisy),
               "rounds": float(len(times)), "first_call_s": 10 * median,
               "compile_s": 9 * median}
    cost = floor.modelled_cost(256, c, "float32", cell["form"], pass_)
    check = {"loss_nonfinite": 0, "loss_max_abs": 1e-7, "loss_max_rel": 1e-7, "loss_err_eps": 1.5}
    if pass_ == "forward_backward":
        check |= {"grad_nonfinite": 0, "grad_max_abs": 1e-8, "grad_max_rel": 1e-7,
                  "grad_err_eps": 0.5}
    metrics = (summary | cost | check | floor.floor_metrics(cost, pass_, CEILINGS, median)
               | {"peak_extra_bytes": 2.0 * 2**20, "retained_bytes": 2**20} | CEILINGS)
    return _record(cell, metrics, raw={"times_s": times},
                   labels={"cache_mode": "warm (no flush)"})


def _agreement(impl: str, dtype: str, scale: float, loss_eps: float,
               grad_eps: float) -> Record:
    """An ok agreement record; an infinite error stands for a non-finite output."""
    cell = _cell("agreement", impl, 32, 100, dtype, "forward_backward", scale)
    metrics = {}
    for q, err in (("loss", loss_eps), ("grad", grad_eps)):
        metrics |= {f"{q}_nonfinite": 3 if err == float("inf") else 0, f"{q}_max_abs": err * 1e-7,
                    f"{q}_max_rel": err * 1e-7, f"{q}_err_eps": err}
    return _record(cell, metrics, labels={"out_dtype": dtype})


def _write_run(path: Path, kind: str, records: list[Record], **extra) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    meta = {"run_id": "run-1", "kind": kind, "preset": "test", "device": "cpu", "threads": 2,
            "allocator": "default", "budget_s": 0.1, "min_rounds": 5, "max_rounds": 50,
            "machine": {"cpu_model": "Test CPU", "git_commit": "abc123", "python": "3.11.7",
                        "platform": "Linux-test", "started": "2026-01-01T00:00:00+00:00",
                        "hostname": "box", "cpu_count": 2},
            "notes": ["tensorflow: skipped, not installed (missing tensorflow)"],
            "cells": [r.cell for r in records], "finished": "2026-01-01T00:01:00"} | extra
    (path / "meta.json").write_text(json.dumps(meta))
    for rec in records:
        append_record(path, rec)
    return path


@pytest.fixture(scope="module")
def timing_report(tmp_path_factory) -> dict:
    """What ``write_reports`` returned for a timing run folder (written once per module: the
    plots take a few seconds)."""
    records = [
        _timing("torch/native/sparse", "forward", 2.0),
        _timing("torch/compiled/sparse", "forward", 0.5),
        _timing("torch/native/sparse", "forward_backward", 5.0, noisy=True),
        _timing("torch/compiled/sparse", "forward_backward", 4.0),
        _timing("torch/native/onehot", "forward", 3.0),
        _timing("torch/native/sparse", "forward", 0.2, c=10),
        _record(_cell("timing", "jax/optax/sparse", 256, 1000, "float32", "forward"), {},
                status="error", error="RuntimeError: boom <in> the jax worker"),
    ]
    halved = {k: v / 2 for k, v in CEILINGS.items()}
    ceilings = {"per_framework": {"torch": CEILINGS, "jax": halved},
                "best": CEILINGS | {f"{k}_by": "torch" for k in CEILINGS}}
    run = _write_run(tmp_path_factory.mktemp("timing"), "timing", records, ceilings=ceilings)
    return report.write_reports(run)


@pytest.fixture(scope="module")
def agreement_report(tmp_path_factory) -> dict:
    """What ``write_reports`` returned for an agreement run folder."""
    records = []
    for dtype, overflow_scale in (("float32", 100.0), ("float16", 10.0)):
        for scale in (1.0, 10.0, 100.0):
            records.append(_agreement("torch/native/sparse", dtype, scale, 0.7, 0.3))
            naive = float("inf") if scale >= overflow_scale else 0.9
            records.append(_agreement("torch/naive/sparse", dtype, scale, naive, naive))
            # An unexpected failure: manual misses the tolerance at float16, scale 100.
            bad = 50.0 if (dtype, scale) == ("float16", 100.0) else 0.8
            records.append(_agreement("torch/manual/sparse", dtype, scale, bad, 0.3))
    run = _write_run(tmp_path_factory.mktemp("agreement"), "agreement", records)
    return report.write_reports(run)


def _section(markdown: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of any level."""
    start = markdown.index(heading + "\n")
    end = markdown.find("\n#", start + len(heading))
    return markdown[start:end if end != -1 else None]


def _rows(section: str) -> list[dict]:
    """The first Markdown table of ``section`` as dicts."""
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split(" | ")]
    return [dict(zip(header, (v.strip() for v in ln.strip("|").split(" | ")))) for ln in lines[2:]]


def test_timing_report_writes_every_file(timing_report):
    run_dir = timing_report["markdown"].parent
    for key in ("markdown", "html", "parquet", "csv", "raw_parquet", "raw_csv"):
        assert Path(timing_report[key]).is_file(), key
    plots = timing_report["plots"]
    assert [p.name for p in plots] == ["time_ms.png", "gbps_vs_classes.png", "pct_of_limit.png",
                                       "peak_memory.png"]
    assert all(p.stat().st_size for p in plots)
    assert {p.parent for p in plots} == {run_dir / "plots"}


def test_report_embeds_the_time_plot_with_its_band_explained(timing_report):
    md = Path(timing_report["markdown"]).read_text()
    plots = _section(md, "## Plots")
    (line,) = [ln for ln in plots.splitlines() if "plots/time_ms.png" in ln]
    assert "fastest" in line and "q1 to q3" in line
    assert plots.index("time_ms.png") < plots.index("gbps_vs_classes.png")
    page = Path(timing_report["html"]).read_text()
    assert "interquartile range, q1 to q3" in page


def test_tables_round_trip(timing_report):
    records = load_records(timing_report["markdown"].parent)
    expected = tidy(records)
    back = pd.read_parquet(timing_report["parquet"])
    assert len(back) == len(expected)
    assert set(back.columns) == set(expected.columns)
    assert len(pd.read_csv(timing_report["csv"])) == len(expected)
    raw = pd.read_parquet(timing_report["raw_parquet"])
    assert len(raw) == sum(len(r.raw.get("times_s", [])) for r in records)
    assert list(raw.columns[-2:]) == ["round", "time_s"]


def test_ranked_table_puts_the_faster_impl_first(timing_report):
    md = Path(timing_report["markdown"]).read_text()
    rows = _rows(_section(md, "### 256x1000 float32 forward"))
    impls = [r["impl"] for r in rows]
    assert impls.index("torch/compiled/sparse") < impls.index("torch/native/sparse")
    assert rows[0]["#"] == "1" and rows[0]["median ms"] == "0.500"
    # The cell that did not run is in the table, last, with its status.
    assert rows[-1]["impl"] == "jax/optax/sparse" and "error" in rows[-1]["median ms"]
    # Forward cells are judged on the loss alone.
    assert rows[0]["verdict"] == "pass 1.5"


def test_speedup_is_the_ratio_of_medians(timing_report):
    cells = load_run(timing_report["markdown"].parent).cells.set_index(["impl", "pass", "c"])
    for pass_, native_ms, compiled_ms in (("forward", 2.0, 0.5), ("forward_backward", 5.0, 4.0)):
        got = cells.loc[("torch/compiled/sparse", pass_, 1000), "speedup_vs_native"]
        assert got == pytest.approx(native_ms / compiled_ms)
    md = Path(timing_report["markdown"]).read_text()
    rows = {r["impl"]: r for r in _rows(_section(md, "### 256x1000 float32 forward"))}
    assert rows["torch/compiled/sparse"]["vs native"] == f"{2.0 / 0.5:.2f}x"
    assert rows["torch/native/sparse"]["vs native"] == "1.00x"


def test_timing_report_content(timing_report):
    md = Path(timing_report["markdown"]).read_text()
    assert "# xent-bench timing report: run-1" in md
    assert "RuntimeError: boom <in> the jax worker" in md
    assert "tensorflow: skipped, not installed" in md
    status = {r["framework"]: r for r in _rows(_section(md, "## Cell status"))}
    assert status["jax"]["error"] == "**1**" and status["all"]["ok"] == "6"
    fb = _rows(_section(md, "### 256x1000 float32 forward_backward"))
    assert fb[-1]["impl"] == "torch/native/sparse" and fb[-1]["IQR"] == "30% noisy"
    assert "1 of 6 timed cells are noisy" in md
    ratios = {r["framework/variant"]: r for r in _rows(_section(md, "### forward\n").strip())}
    assert ratios["torch/native"]["256x1000 float32"] == "1.50x / 1.00x"
    ceilings = {r["framework"]: r
                for r in _rows(_section(md, "## Machine ceilings and the floor model"))}
    assert ceilings["best (used for floors)"]["exp G/s"] == "1.00 (torch)"
    assert "## Headlines" in md and "## Column glossary" in md
    assert "Fastest at 256x1000 forward: float32 `torch/compiled/sparse`" in md


def test_html_is_self_contained(timing_report):
    page = Path(timing_report["html"]).read_text()
    assert page.count('src="data:image/png;base64,') == len(timing_report["plots"])
    assert 'src="plots/' not in page
    assert "RuntimeError: boom &lt;in&gt; the jax worker" in page
    assert '<td class="bad">' in page and "<style>" in page


def test_agreement_table_marks_expected_and_unexpected_failures(agreement_report):
    md = Path(agreement_report["markdown"]).read_text()
    rows = {r["implementation"]: r for r in _rows(_section(md, "### sparse form"))}
    naive = rows["torch/naive/sparse (meant to fail)"]
    assert naive["float32 s=1"] == "pass 0.9/0.9"
    assert naive["float32 s=100"] == "nonfinite (expected)"
    assert naive["float16 s=10"] == "nonfinite (expected)"
    assert rows["torch/manual/sparse"]["float16 s=100"] == "**FAIL 50/0.3**"
    assert rows["torch/native/sparse"]["float16 s=100"] == "pass 0.7/0.3"
    page = Path(agreement_report["html"]).read_text()
    assert '<td class="expected">nonfinite (expected)</td>' in page
    assert '<td class="bad">FAIL 50/0.3</td>' in page
    assert 'src="data:image/png;base64,' in page


def test_what_this_shows_is_derived_from_the_records(agreement_report):
    md = Path(agreement_report["markdown"]).read_text()
    shows = _section(md, "## What this shows")
    assert ("`torch/naive/sparse` returns inf/NaN from scale 100 at float32 and from scale 10 "
            "at float16 (meant to fail") in shows
    assert "**Unexpected failures**: `torch/manual/sparse`" in shows
    assert "At float32, 2 of 3 implementations pass" in shows
    assert "Largest float32 error among implementations not meant to fail: loss 0.8 eps" in shows
    assert "`torch/manual/sparse` 50x at float16" in shows


def test_empty_run(tmp_path):
    run = _write_run(tmp_path / "empty", "timing", [])
    written = report.write_reports(run)
    md = Path(written["markdown"]).read_text()
    assert "No records" in md and written["plots"] == []
    assert len(pd.read_parquet(written["parquet"])) == 0


def test_run_with_only_errors(tmp_path):
    records = [_record(_cell("timing", "torch/native/sparse", 8, 10, "float32", "forward"), {},
                       status="oom", error="OutOfMemoryError: 8 GiB"),
               _record(_cell("timing", "torch/native/onehot", 8, 10, "float32", "forward"), {},
                       status="error", error="worker killed by signal SIGKILL")]
    written = report.write_reports(_write_run(tmp_path / "errors", "timing", records))
    md = Path(written["markdown"]).read_text()
    assert "OutOfMemoryError: 8 GiB" in md and "worker killed by signal SIGKILL" in md
    assert "No cell produced a timing." in md and written["plots"] == []


@pytest.mark.parametrize("value, text", [(0.000123, "1.23e-04"), (0.1856, "0.186"), (12.34, "12.3"),
                                         (1234.5, "1234"), (float("nan"), report.MISSING),
                                         (float("inf"), "inf")])
def test_fmt_num(value, text):
    assert fmt.fmt_num(value) == text


@pytest.mark.parametrize("value, digits, text", [(8.0, 3, "8"), (0.5, 3, "0.5"), (1.25, 2, "1.2"),
                                                 (1234.5, 3, "1234"), (0.000120, 3, "1.2e-04"),
                                                 (float("nan"), 3, report.MISSING)])
def test_fmt_num_trimmed(value, digits, text):
    assert fmt.fmt_num(value, digits, trim=True) == text


@pytest.mark.parametrize("value, unit, text", [(2**20, "MiB", "1.00"), (1536, "KiB", "1.50"),
                                               (None, "MiB", report.MISSING),
                                               (float("nan"), "KiB", report.MISSING)])
def test_fmt_bytes(value, unit, text):
    assert fmt.fmt_bytes(value, unit) == text


def test_the_closing_summary_counts_outcomes_and_repeats_the_fastest(timing_report):
    summary = timing_report["summary"]
    assert summary[0].endswith("7 cells (6 ok, 1 error); 0 contended, 0 above 100% of the limit")
    fastest = [line for line in summary if line.startswith("Fastest at ")]
    assert "Fastest at 256x1000 forward: float32 torch/compiled/sparse 0.500 ms" in " ".join(
        fastest)
    assert len(fastest) == 3 and "`" not in " ".join(summary)  # three cases, plain text


def test_the_closing_summary_of_runs_without_timings(tmp_path, agreement_report):
    assert agreement_report["summary"][0].endswith("cells (18 ok)")
    records = [_record(_cell("timing", "torch/native/sparse", 8, 10, "float32", "forward"), {},
                       status="oom", error="OutOfMemoryError")]
    written = report.write_reports(_write_run(tmp_path / "oom", "timing", records))
    assert written["summary"] == ["run-1: 1 cell (1 oom); "
                                  "0 contended, 0 above 100% of the limit"]


def test_free_text_from_a_run_folder_cannot_add_markup(tmp_path):
    """A note in meta.json is untrusted: it stays one literal bullet in Markdown and in HTML."""
    note = "evil\n## Injected heading <img src=x onerror=alert(1)> | **bold** `code`"
    run = _write_run(tmp_path / "notes", "timing", [_timing("torch/native/sparse", "forward",
                                                              1.0)], notes=[note])
    written = report.write_reports(run)
    md = Path(written["markdown"]).read_text()
    assert "\n## Injected heading" not in md
    assert not re.search(r"(?<!\\)<img", md), "an unescaped HTML tag"
    (line,) = [ln for ln in md.splitlines() if "Injected heading" in ln]
    assert line.startswith("- evil \\#\\# Injected heading \\<img")
    page = Path(written["html"]).read_text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "**bold** `code`" in page and "\\#" not in page  # literal, without the escapes


def test_the_report_answers_first_and_ends_with_provenance(timing_report):
    md = Path(timing_report["markdown"]).read_text()
    order = [md.index(h) for h in ("## Headlines", "## Which to use", "## Results",
                                   "## Cell status", "## Provenance", "## Column glossary")]
    assert order == sorted(order)
    rows = {r["case"]: r for r in _rows(_section(md, "## Which to use"))}
    # torch/compiled is the fastest at 256 x 1000 forward; the failed jax cell is not offered.
    assert rows["256x1000 float32 fwd"]["use"] == "torch/compiled/sparse"
    assert rows["256x1000 float32 fwd"]["median ms"] == "0.500"
    assert rows["256x1000 float32 fwd"]["fastest of each other framework"] == "–"
    assert set(rows) == {"256x10 float32 fwd", "256x1000 float32 fwd", "256x1000 float32 fwd+bwd"}


def test_which_to_use_skips_contended_and_failing_cells(tmp_path):
    fastest_but_contended = _timing("torch/compiled/sparse", "forward", 0.3)
    fastest_but_contended.metrics["contended"] = 1.0
    fastest_but_wrong = _timing("jax/manual/sparse", "forward", 0.4)
    fastest_but_wrong.metrics["loss_err_eps"] = 1e6  # far beyond the float32 tolerance
    records = [fastest_but_contended, fastest_but_wrong, _timing("torch/native/sparse",
                                                                  "forward", 1.0),
               _timing("jax/optax/sparse", "forward", 2.0)]
    run = load_run(_write_run(tmp_path / "choice", "timing", records))
    (row,) = report.choice_rows(run.cells)
    assert row["use"] == "torch/native/sparse" and row["median ms"] == "1.00"
    assert row["fastest of each other framework"] == "jax/optax/sparse 2.00 ms"


def test_an_implementation_meant_to_fail_is_never_the_one_to_use(tmp_path):
    """torch/naive passes at the timing runs' scale but overflows at larger logits: it is ranked
    in the tables, not offered by "which to use" or named fastest by the headlines."""
    records = [_timing("torch/naive/sparse", "forward", 0.2),
               _timing("torch/native/sparse", "forward", 1.0)]
    run = load_run(_write_run(tmp_path / "naive", "timing", records))
    (row,) = report.choice_rows(run.cells)
    assert row["use"] == "torch/native/sparse"
    fastest = [b for b in report.headline_findings(run.cells) if b.startswith("Fastest at ")]
    assert fastest and all("naive" not in b for b in fastest), fastest
    assert "torch/native/sparse" in fastest[0]
