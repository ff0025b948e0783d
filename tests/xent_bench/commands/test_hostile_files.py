"""Every field of a run folder's files, and of a pytest-benchmark JSON file, replaced by each
value of the wrong kind: ``xent-bench report`` either skips the bad record (a warning) and
reports the rest, or refuses the file with one line and exit status 2. Never a traceback, never
exit status 1 (which ``compare`` uses for "regression"), never a file outside the folder.

The corpus is generated here, systematically (field x value), so the count of cases is the
count of faults tried."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import pytest

import xent_impls
from xent_bench.cli import main
from xent_bench.harness import runner
from xent_bench.harness.cells import make_cell
from xent_bench.harness.records import Record
from xent_impls import Case

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

# Values of the wrong kind for any field: missing, null, a string, a list, an object, a
# negative, a non-finite number, a boolean, a huge integer, text with markup and newlines.
MISSING = object()
WRONG = {"missing": MISSING, "null": None, "string": "x", "list": [1], "object": {"a": 1},
         "negative": -1, "nan": float("nan"), "inf": float("inf"), "bool": True,
         "huge": 10**400, "markup": "<b>$x$</b>\n## heading"}


def _cell() -> dict:
    return make_cell("timing", xent_impls.get("numpy/reference/sparse"), Case(8, 10, "float32"),
                     "forward", "cpu")


def _meta() -> dict:
    return runner.new_meta("timing", device="cpu", threads=1, allocator="default",
                           budget_s=0.1, min_rounds=1, max_rounds=5, preset="smoke",
                           cells=[_cell(), _cell() | {"pass": "forward_backward"}], notes=[])


def _record(meta: dict, **cell) -> dict:
    return Record(run_id=meta["run_id"], cell=_cell() | cell, status="ok",
                  metrics={"median_s": 1e-4, "q1_s": 1e-4, "q3_s": 1.1e-4, "rounds": 5.0},
                  labels={"cache_mode": "warm (no flush)"}, raw={"times_s": [1e-4] * 5},
                  env={"threads": 1}).to_json()


def _set(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is MISSING:
        if isinstance(node, dict):
            node.pop(last, None)
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def _dumps(data) -> str:
    # Python's json writes NaN/Infinity; a number beyond float range stays a huge integer.
    return json.dumps(data, allow_nan=True)


RECORD_FIELDS = ("run_id", "cell", "status", "error", "metrics", "labels", "raw", "env",
                 "schema", "cell.kind", "cell.impl", "cell.framework", "cell.form", "cell.n",
                 "cell.c", "cell.dtype", "cell.scale", "cell.seed", "cell.pass", "cell.device",
                 "metrics.median_s", "metrics.q1_s", "metrics.rounds", "raw.times_s",
                 "raw.times_s.0", "env.threads")
META_FIELDS = ("run_id", "kind", "preset", "device", "cells", "cells.0", "cells.0.n",
               "machine", "ceilings", "notes", "threads", "schema")
LINES = {"empty object": "{}", "list": "[1, 2]", "string": '"record"', "number": "7",
         "cut off": '{"run_id": "r', "deep nesting": "[" * 100_000 + "]" * 100_000,
         "binary": "\x00\xff\xfe"}


def _report(tmp_path: Path, meta: dict, lines: list[str], capsys) -> tuple[int, str, Path]:
    run = tmp_path / "run"
    run.mkdir()
    (run / "meta.json").write_text(_dumps(meta))
    (run / "records.jsonl").write_text("".join(line + "\n" for line in lines))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a skipped record warns; what counts is the outcome
        code = main(["report", str(run)])
    return code, capsys.readouterr().err, run


def _assert_clean(code: int, err: str, tmp_path: Path, run: Path) -> None:
    assert code in (0, 2), f"exit status {code}: {err[-1500:]}"
    assert "Traceback" not in err
    if code == 2:
        errors = [ln for ln in err.splitlines() if ln.startswith("xent-bench: error:")]
        assert len(errors) == 1, err
    else:
        assert (run / "report.md").is_file()
    outside = {p.name for p in tmp_path.iterdir()} - {"run"}
    assert not outside, f"written outside the run folder: {outside}"


@pytest.mark.parametrize("value", WRONG, ids=str)
@pytest.mark.parametrize("field", RECORD_FIELDS)
def test_a_record_with_a_field_of_the_wrong_kind(tmp_path, capsys, field, value):
    meta = _meta()
    good = _record(meta, **{"pass": "forward_backward"})
    bad = _set(_record(meta), field, WRONG[value])
    code, err, run = _report(tmp_path, meta, [_dumps(bad), _dumps(good)], capsys)
    _assert_clean(code, err, tmp_path, run)
    if code == 0:  # the good record is reported whatever became of the bad one
        assert "forward_backward" in (run / "report.md").read_text()


@pytest.mark.parametrize("line", LINES)
def test_a_records_line_that_is_not_a_record(tmp_path, capsys, line):
    meta = _meta()
    code, err, run = _report(tmp_path, meta, [LINES[line], _dumps(_record(meta))], capsys)
    _assert_clean(code, err, tmp_path, run)


@pytest.mark.parametrize("value", WRONG, ids=str)
@pytest.mark.parametrize("field", META_FIELDS)
def test_a_meta_with_a_field_of_the_wrong_kind(tmp_path, capsys, field, value):
    meta = _meta()
    code, err, run = _report(tmp_path, _set(meta, field, WRONG[value]),
                             [_dumps(_record(meta))], capsys)
    _assert_clean(code, err, tmp_path, run)


def _benchmark_json() -> dict:
    info = {"impl": "torch/native/sparse", "framework": "torch", "form": "sparse",
            "variant": "native", "n": 256, "c": 1000, "dtype": "float32", "pass": "forward",
            "device": "cpu", "scale": 1.0, "seed": 0, "times_s": [1e-3, 1.1e-3, 0.9e-3],
            "loss_err_eps": 1.0, "first_call_s": 0.01, "threads": 2,
            "ceilings": {"copy_GBps": 20.0, "read_GBps": 25.0, "exp_Gps": 1.0}}
    return {"version": "5.1.0", "datetime": "2026-01-01T00:00:00",
            "machine_info": {"node": "box", "cpu": {"count": 2},
                             "xent": {"cpu_model": "Test CPU", "packages": {"torch": "9.9"}}},
            "commit_info": {"id": "abc123456789", "dirty": False},
            "benchmarks": [{"name": "test_cross_entropy[torch-256x1000]", "extra_info": info,
                            "stats": {"data": [1e-3, 1.1e-3, 0.9e-3]}}]}


BENCHMARK_FIELDS = ("version", "datetime", "machine_info", "machine_info.xent",
                    "machine_info.xent.packages", "commit_info", "commit_info.id",
                    "benchmarks", "benchmarks.0", "benchmarks.0.name",
                    "benchmarks.0.extra_info", "benchmarks.0.extra_info.impl",
                    "benchmarks.0.extra_info.n", "benchmarks.0.extra_info.dtype",
                    "benchmarks.0.extra_info.pass", "benchmarks.0.extra_info.times_s",
                    "benchmarks.0.extra_info.ceilings", "benchmarks.0.extra_info.ceilings.exp_Gps",
                    "benchmarks.0.stats")


@pytest.mark.parametrize("value", WRONG, ids=str)
@pytest.mark.parametrize("field", BENCHMARK_FIELDS)
def test_a_pytest_benchmark_file_with_a_field_of_the_wrong_kind(tmp_path, capsys, field, value):
    path = tmp_path / "bench.json"
    path.write_text(_dumps(_set(_benchmark_json(), field, WRONG[value])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["report", str(path), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code in (0, 2), f"exit status {code}: {err[-1500:]}"
    assert "Traceback" not in err
    if code == 2:
        assert len([ln for ln in err.splitlines() if ln.startswith("xent-bench: error:")]) == 1
    assert {p.name for p in tmp_path.iterdir()} <= {"bench.json", "results"}


def test_a_folder_of_more_records_than_a_run_may_hold_is_refused_at_once(tmp_path, capsys,
                                                                       monkeypatch):
    """10**5 small records made a report take gigabytes; past files.MAX_RECORDS the folder is
    refused with one line (the limit lowered here, so the test stays small)."""
    from xent_bench.harness import files

    monkeypatch.setattr(files, "MAX_RECORDS", 50)
    meta = _meta()
    lines = [_dumps(_record(meta, n=8 + i)) for i in range(51)]
    code, err, run = _report(tmp_path, meta, lines, capsys)
    assert code == 2 and "holds more than 50 records" in err and "Traceback" not in err
    assert not (run / "report.md").exists()


def test_a_grid_of_more_cells_than_a_run_may_hold_is_refused_before_it_starts(tmp_path,
                                                                            monkeypatch):
    from xent_bench.harness import files

    monkeypatch.setattr(files, "MAX_RECORDS", 3)
    with pytest.raises(ValueError, match="2 cells x 2 repeats would be more than the 3"):
        runner.start_run("timing", [_cell(), _cell() | {"pass": "forward_backward"}],
                         results=tmp_path, device="cpu", threads=1, allocator="default",
                         budget_s=0.1, min_rounds=1, max_rounds=5, preset="smoke", notes=[],
                         repeats=2)
    assert not any(tmp_path.iterdir())


def test_resuming_a_folder_of_more_records_than_a_run_may_hold_is_one_line(tmp_path, capsys,
                                                                         monkeypatch):
    from xent_bench.harness import files

    monkeypatch.setattr(files, "MAX_RECORDS", 50)
    meta = _meta()
    run = tmp_path / "run"
    run.mkdir()
    (run / "meta.json").write_text(_dumps(meta))
    (run / "records.jsonl").write_text(
        "".join(_dumps(_record(meta, n=8 + i)) + "\n" for i in range(51)))
    code = main(["run", "--resume", str(run), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "holds more than 50 records" in err and "Traceback" not in err
