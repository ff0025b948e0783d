"""Crafted run folders: nothing is written outside them, and every bad file is one line and
exit status 2 (no traceback, no hang)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

import xent_impls
from xent_bench.cli import main
from xent_bench.harness import runner
from xent_bench.harness.cells import make_cell
from xent_bench.harness.records import InvalidRecordWarning, Record, append_record, load_records
from xent_impls import Case

pytest.importorskip("pandas")


def _cell():
    return make_cell("timing", xent_impls.get("numpy/reference/sparse"), Case(8, 10, "float32"),
                     "forward", "cpu")


def _run(path: Path, **meta) -> Path:
    cell = _cell()
    info = runner.new_meta("timing", device="cpu", threads=1, allocator="default", budget_s=0.1,
                           min_rounds=1, max_rounds=5, preset="smoke", cells=[cell],
                           notes=[]) | meta
    path.mkdir()
    (path / "meta.json").write_text(json.dumps(info))
    append_record(path, Record(run_id=info["run_id"] if "run_id" not in meta else "r1",
                               cell=cell, status="ok",
                               metrics={"median_s": 1e-4, "q1_s": 1e-4, "q3_s": 1e-4},
                               raw={"times_s": [1e-4] * 5}))
    return path


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("xent-bench: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_a_report_that_is_a_link_is_replaced_not_written_through(tmp_path):
    outside = tmp_path / "bashrc"
    outside.write_text("# the user's start-up file\n")
    run = _run(tmp_path / "run")
    (run / "report.md").symlink_to(outside)
    assert main(["report", str(run)]) == 0
    assert outside.read_text() == "# the user's start-up file\n"
    assert not (run / "report.md").is_symlink()
    assert "xent-bench timing report" in (run / "report.md").read_text()


@pytest.mark.parametrize("run_id", ["../../outside", "run\necho pwned >> ~/.bashrc", "<b>x</b>",
                                    7])
def test_a_crafted_run_id_is_refused(tmp_path, capsys, run_id):
    run = _run(tmp_path / "run", run_id=run_id)
    err = _one_line_error(capsys, main(["report", str(run)]))
    assert "run_id must be a name" in err
    other = _run(tmp_path / "other")
    _one_line_error(capsys, main(["compare", str(other), str(run),
                                  "--results", str(tmp_path / "out")]))
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "run"]


def test_a_records_file_that_is_a_fifo_is_refused_without_hanging(tmp_path, capsys):
    run = _run(tmp_path / "run")
    (run / "records.jsonl").unlink()
    os.mkfifo(run / "records.jsonl")
    err = _one_line_error(capsys, main(["report", str(run)]))
    assert "not a regular file" in err


def test_a_meta_that_is_a_device_or_not_an_object_is_refused(tmp_path, capsys):
    run = _run(tmp_path / "run")
    (run / "meta.json").unlink()
    (run / "meta.json").symlink_to("/dev/zero")
    assert "not a regular file" in _one_line_error(capsys, main(["report", str(run)]))
    (run / "meta.json").unlink()
    (run / "meta.json").write_text("[1, 2]")
    assert "JSON object" in _one_line_error(capsys, main(["report", str(run)]))
    (run / "meta.json").write_text("{not json")
    assert "not valid JSON" in _one_line_error(capsys, main(["report", str(run)]))


def test_a_plots_folder_that_is_a_link_is_refused(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = _run(tmp_path / "run")
    (run / "plots").symlink_to(elsewhere)
    code = main(["report", str(run)])
    if code == 0:  # a grid too small for plots writes none: nothing went through the link
        assert list(elsewhere.iterdir()) == []
    else:
        assert "symbolic link" in _one_line_error(capsys, code)
        assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("impl", ["numpy/$x^2$/sparse", "numpy/<script>/sparse",
                                  "numpy/a b\nc/sparse"])
def test_records_with_markup_in_their_names_are_skipped(tmp_path, impl):
    run = _run(tmp_path / "run")
    line = json.loads((run / "records.jsonl").read_text())
    line["cell"]["impl"] = impl
    with open(run / "records.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = load_records(run)
    assert len(records) == 1
    assert any(issubclass(w.category, InvalidRecordWarning) and "cell impl" in str(w.message)
               for w in caught)


@pytest.mark.parametrize("argv", [
    ["run", "--budget", "nan"], ["run", "--budget", "-1"], ["run", "--budget", "inf"],
    ["run", "--budget", "fast"], ["behaviour", "--cell-timeout", "0"],
    ["distributed", "--budget", "nan"], ["stability", "--budget", "0"],
    ["compare", "a", "b", "--drift", "nan"], ["compare", "a", "b", "--threshold", "-0.1"],
    ["compare", "a", "b", "--memory-floor-mib", "inf"],
])
def test_meaningless_numbers_are_refused_before_anything_runs(capsys, argv):
    err = _one_line_error(capsys, main(argv))
    assert "must be a finite number" in err or "expected a number" in err
