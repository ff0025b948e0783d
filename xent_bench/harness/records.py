"""Crash-safe record files and the tidy table built from them.

A run folder holds ``records.jsonl``: one JSON object per finished cell, appended and flushed
to disk (fsync) the moment the cell finishes, so a crash or a kill loses nothing already
measured. A cell record is ``{"cell": {...}, "status": "ok" | "error" | "oom", "metrics":
{name: number}, "raw": {...}, "env": {...}, "error": str | None}``.

The tidy table (:func:`tidy`) has one row per (run, implementation, case, metric): the cell
keys, the cell's status/error, environment columns, then ``metric`` and ``value``. Reports are
built from that table, never the other way round.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from xent_bench.harness.cells import cell_key

RECORDS = "records.jsonl"


class TruncatedRecordWarning(UserWarning):
    """The last line of a record file was cut off (the writer died mid-write)."""


def append_record(run_dir: Path, record: dict) -> None:
    """Append one record as a single line and force it to disk."""
    line = json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"
    with open(Path(run_dir) / RECORDS, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def load_records(run_dir: Path) -> list[dict]:
    """All complete records of a run. A malformed line (a write cut off by a crash) is reported
    with a ``TruncatedRecordWarning`` and skipped."""
    path = Path(run_dir) / RECORDS
    if not path.exists():
        return []
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                warnings.warn(
                    f"{path}:{lineno}: skipping a truncated or malformed record "
                    f"({len(line)} bytes: {line[:60]!r}...)",
                    TruncatedRecordWarning,
                    stacklevel=2,
                )
    return records


def repair_tail(run_dir: Path) -> bool:
    """Make sure the record file ends with a newline, so appends after a crash start on a fresh
    line (the cut-off line stays and is skipped on load). Returns True if a repair was needed."""
    path = Path(run_dir) / RECORDS
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return False
        fh.write(b"\n")
    return True


def finished_keys(records: list[dict]) -> set[str]:
    """Keys of cells that have a final record (ok, error or oom)."""
    return {cell_key(r["cell"]) for r in records}
