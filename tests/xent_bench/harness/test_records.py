"""The record schema: a typed, versioned ``Record``, its JSON form, and the validating reader of
a run's ``records.jsonl``."""

from __future__ import annotations

import json
import math

import pytest

from xent_bench.harness.cells import cell_key
from xent_bench.harness.records import (
    RECORDS,
    SCHEMA_VERSION,
    InvalidRecordWarning,
    Record,
    TruncatedRecordWarning,
    append_record,
    finished_keys,
    load_records,
    repair_tail,
)


def _cell(**changes) -> dict:
    return {"kind": "timing", "impl": "torch/native/sparse", "framework": "torch",
            "form": "sparse", "variant": "native", "n": 8, "c": 10, "dtype": "float32",
            "scale": 1.0, "seed": 0, "pass": "forward", "device": "cpu", "probe": ""} | changes


def _record(**changes) -> Record:
    fields = {"run_id": "run-1", "cell": _cell(), "status": "ok",
              "metrics": {"median_s": 1e-3, "loss_err_eps": 0.5, "grad_err_eps": None},
              "labels": {"cache_mode": "warm (no flush)"}, "raw": {"times_s": [1e-3, 2e-3]},
              "env": {"versions": {"torch": "9.9"}, "threads": 2}}
    return Record(**fields | changes)


def _json(**changes) -> dict:
    """The JSON object of a valid record, with fields changed."""
    return _record().to_json() | changes


def _write_lines(tmp_path, *lines: str) -> None:
    (tmp_path / RECORDS).write_text("".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The record and its JSON form


def test_round_trip_to_json_and_back():
    rec = _record()
    data = rec.to_json()
    assert data["schema"] == SCHEMA_VERSION
    assert set(data) == {"schema", "run_id", "cell", "status", "error", "metrics", "labels",
                         "raw", "env"}
    back = Record.from_json(json.loads(json.dumps(data)))
    assert back == rec
    assert back.key == cell_key(rec.cell)


def test_round_trip_through_a_file_keeps_nan_and_order(tmp_path):
    first = _record(metrics={"median_s": 1e-3, "loss_err_eps": math.nan})
    second = _record(cell=_cell(n=16), status="error", error="RuntimeError: boom", metrics={},
                     raw={})
    append_record(tmp_path, first)
    append_record(tmp_path, second)
    loaded = load_records(tmp_path)
    assert [r.key for r in loaded] == [first.key, second.key]
    assert math.isnan(loaded[0].metrics["loss_err_eps"])
    assert loaded[1] == second
    assert finished_keys(loaded) == {first.key, second.key}


def test_a_line_without_schema_is_version_1():
    data = _json()
    del data["schema"]
    rec = Record.from_json(data)
    assert rec.schema == 1
    # Optional fields may be absent too (written before they existed).
    minimal = {"run_id": "old", "cell": _cell(), "status": "error"}
    rec = Record.from_json(minimal)
    assert (rec.metrics, rec.labels, rec.raw, rec.env, rec.error) == ({}, {}, {}, {}, None)


def test_a_newer_schema_is_refused():
    with pytest.raises(ValueError, match=f"schema {SCHEMA_VERSION + 1} is newer"):
        Record.from_json(_json(schema=SCHEMA_VERSION + 1))
    with pytest.raises(ValueError, match="schema"):
        _record(schema=SCHEMA_VERSION + 1)
    for bad in (0, "1", True, None):
        with pytest.raises(ValueError, match="schema"):
            Record.from_json(_json() | {"schema": bad})


@pytest.mark.parametrize(("changes", "field"), [
    ({"run_id": ""}, "run_id"),
    ({"run_id": 7}, "run_id"),
    ({"cell": ["timing"]}, "cell"),
    ({"cell": {"kind": "timing"}}, "cell lacks impl"),
    ({"cell": _cell(n=-1)}, "cell n"),
    ({"cell": _cell(c="10")}, "cell c"),
    ({"cell": _cell(seed=True)}, "cell seed"),
    ({"status": "done"}, "status"),
    ({"error": 3}, "error"),
    ({"metrics": [1.0]}, "metrics"),
    ({"metrics": {"median_s": "fast"}}, "metric 'median_s'"),
    ({"metrics": {"noisy": True}}, "metric 'noisy'"),
    ({"labels": "warm"}, "labels"),
    ({"raw": None}, "raw"),
    ({"env": 1}, "env"),
    ({"raw": {"times_s": [1e-3, -1.0]}}, "times_s"),
    ({"raw": {"times_s": [math.inf]}}, "times_s"),
    ({"raw": {"times_s": "1e-3"}}, "times_s"),
])
def test_wrong_types_are_refused_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        _record(**changes)
    with pytest.raises(ValueError, match=field):
        Record.from_json(_json(**changes))


def test_unknown_and_missing_fields_are_refused():
    with pytest.raises(ValueError, match="unknown record field.*colour"):
        Record.from_json(_json() | {"colour": "red"})
    for name in ("run_id", "cell", "status"):
        data = _json()
        del data[name]
        with pytest.raises(ValueError, match=f"no '{name}'"):
            Record.from_json(data)
    with pytest.raises(ValueError, match="JSON object"):
        Record.from_json([1, 2])


# --------------------------------------------------------------------------------------------
# The record file


def test_append_record_refuses_a_dict(tmp_path):
    with pytest.raises(TypeError, match="takes a Record, got dict"):
        append_record(tmp_path, _record().to_json())
    assert not (tmp_path / RECORDS).exists()


def test_append_writes_one_line_per_record(tmp_path):
    append_record(tmp_path, _record())
    append_record(tmp_path, _record(cell=_cell(n=16)))
    lines = (tmp_path / RECORDS).read_text().splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["cell"]["n"] for line in lines] == [8, 16]


def test_invalid_lines_are_skipped_with_a_warning(tmp_path):
    good = json.dumps(_json())
    newer = json.dumps(_json(schema=SCHEMA_VERSION + 1))
    bad_status = json.dumps(_json(status="finished"))
    _write_lines(tmp_path, good + "\n", newer + "\n", bad_status + "\n", "[1, 2]\n", "\n",
                 good + "\n")
    with pytest.warns(InvalidRecordWarning) as caught:
        records = load_records(tmp_path)
    assert len(records) == 2
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3
    assert ":2: skipping an invalid record" in messages[0] and "newer" in messages[0]
    assert ":3:" in messages[1] and "status" in messages[1]
    assert ":4:" in messages[2] and "JSON object" in messages[2]


def test_truncated_line_is_skipped_with_a_warning(tmp_path):
    good = json.dumps(_json())
    _write_lines(tmp_path, good + "\n", good[: len(good) // 2])
    with pytest.warns(TruncatedRecordWarning, match=":2: skipping a truncated"):
        records = load_records(tmp_path)
    assert len(records) == 1
    # After a repair, appends start on a fresh line and the cut-off line stays skipped.
    assert repair_tail(tmp_path) is True
    assert repair_tail(tmp_path) is False
    append_record(tmp_path, _record(cell=_cell(n=16)))
    with pytest.warns(TruncatedRecordWarning):
        records = load_records(tmp_path)
    assert [r.cell["n"] for r in records] == [8, 16]


def test_a_missing_file_has_no_records(tmp_path):
    assert load_records(tmp_path) == []
    assert repair_tail(tmp_path) is False


def test_a_record_cut_off_by_a_full_disk_is_taken_back_and_named(tmp_path, monkeypatch):
    """The disk fills up halfway through a line: the half is cut off again (the file ends at the
    last whole record) and the error names the file and the cause."""
    import errno

    from xent_bench.harness import records as records_mod

    append_record(tmp_path, _record())
    before = (tmp_path / RECORDS).read_bytes()
    real_write, calls = records_mod.os.write, []

    def filling_up(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(records_mod.os, "write", filling_up)
    with pytest.raises(records_mod.RecordWriteError, match="No space left on device") as error:
        append_record(tmp_path, _record(cell=_cell(n=16)))
    assert str(tmp_path / RECORDS) in str(error.value) and error.value.errno == errno.ENOSPC
    assert len(calls) == 2
    assert (tmp_path / RECORDS).read_bytes() == before
    assert len(load_records(tmp_path)) == 1


@pytest.mark.parametrize(("changes", "match"), [
    ({"metrics": {}}, "needs a finite non-negative median_s"),
    ({"metrics": {"median_s": math.nan}}, "needs a finite non-negative median_s"),
    ({"metrics": {"median_s": 1e-3, "rounds": math.inf}}, "'rounds' must be a finite count"),
    ({"cell": _cell(n=10**400)}, "cell n is an integer beyond 64 bits"),
    ({"cell": _cell(c=2**41)}, "cell c must be at most 2\\*\\*40"),
    ({"env": {"threads": 10**30}}, "env threads is an integer beyond 64 bits"),
    ({"raw": {"times_s": [10**400]}}, "raw times_s\\[0\\] is an integer beyond 64 bits"),
    ({"cell": _cell(framework="jax")}, "cell framework 'jax' is not that of its implementation"),
    ({"cell": _cell(dtype=None)}, "cell dtype must be one of"),
    ({"cell": _cell(**{"pass": None})}, "cell pass must be one of"),
    ({"cell": _cell(scale=[1])}, "cell scale must be a finite number"),
    ({"cell": _cell(impl="torch-native")}, "impl must be framework/variant/form"),
])
def test_a_record_the_reports_cannot_use_is_refused_with_the_field_named(changes, match):
    with pytest.raises(ValueError, match=match):
        Record.from_json(_record(**changes).to_json())


def test_a_line_nested_too_deep_for_json_is_skipped_with_a_warning(tmp_path):
    append_record(tmp_path, _record())
    with open(tmp_path / RECORDS, "a") as fh:
        fh.write("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.warns(TruncatedRecordWarning):
        assert len(load_records(tmp_path)) == 1
