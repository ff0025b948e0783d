"""The record of one measured cell (a typed, versioned ``Record``) and the crash-safe file of a
run's records.

A run folder holds ``records.jsonl``: one JSON object per finished cell, appended and flushed
to disk (fsync) the moment the cell finishes, so a crash or a kill loses nothing already
measured. Every writer (worker, runner, distributed launcher, pytest-benchmark import) builds a
``Record`` and appends it with :func:`append_record`; every reader goes through
:func:`load_records`, which validates each line against the schema below.

Schema (version ``SCHEMA_VERSION``; a line without ``schema`` was written before the field
existed and has the same shape as version 1)::

    {"schema": 1, "run_id": str, "cell": {CELL_KEYS...}, "status": "ok" | "error" | "oom",
     "error": str | None, "metrics": {name: number | None}, "labels": {name: str | ...},
     "raw": {...}, "env": {...}}

``metrics`` are the numbers reports aggregate (times in seconds, bytes, error in eps, ...);
``labels`` are per-cell facts that are not numbers (output dtype, cache mode, behaviour);
``raw`` holds the raw timed rounds (``times_s``) and other bulky per-cell data; ``env`` is the
provenance of the process that measured the cell (versions, device, threads, sync method).

The tidy table built from records (one row per run, cell and metric) is
``xent_bench.analysis.run.tidy``; reports are built from records, never the other way round.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import warnings
from pathlib import Path

from xent_bench.harness import files
from xent_bench.harness.cells import cell_key
from xent_impls.dtypes import DTYPES
from xent_impls.vocabulary import DEVICES, FORMS, KINDS, PASSES, STATUSES

RECORDS = "records.jsonl"
SCHEMA_VERSION = 1
# The cell keys every record's cell must carry (the others are optional: ``cells.cell_key``).
REQUIRED_CELL_KEYS = ("kind", "impl", "framework", "form", "variant", "n", "c", "dtype", "scale",
                      "seed", "pass", "device")
# Cell keys that hold names: they become report lines, plot labels and table cells, so a
# record from a shared folder may only put plain characters there (no markup, no newlines).
TEXT_CELL_KEYS = ("kind", "impl", "framework", "form", "variant", "dtype", "pass", "device",
                  "probe")
CELL_TEXT = re.compile(r"[A-Za-z0-9_.+/-]{0,200}")


class TruncatedRecordWarning(UserWarning):
    """A line of a record file was cut off (the writer died mid-write) or is not JSON."""


class InvalidRecordWarning(UserWarning):
    """A line of a record file is JSON but not a record of a schema this version reads."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One finished cell: what was measured, how it ended, and where.

    Attributes:
      run_id: the run the cell belongs to.
      cell: the cell's keys (``cells.CELL_KEYS``; plain JSON values).
      status: ``ok``, ``error`` or ``oom`` (``vocabulary.STATUSES``).
      metrics: numbers (float, or None where a quantity does not apply).
      labels: non-numeric facts of the cell (strings, flags).
      raw: bulky per-cell data: ``times_s`` (every timed round), semantics entries, ...
      env: provenance of the measuring process.
      error: one line saying why the cell did not run, for ``error`` and ``oom``.
      schema: the record format's version.
    """

    run_id: str
    cell: dict
    status: str
    metrics: dict = dataclasses.field(default_factory=dict)
    labels: dict = dataclasses.field(default_factory=dict)
    raw: dict = dataclasses.field(default_factory=dict)
    env: dict = dataclasses.field(default_factory=dict)
    error: str | None = None
    schema: int = SCHEMA_VERSION

    def __post_init__(self):
        validate(self)

    @property
    def key(self) -> str:
        """``cells.cell_key`` of the record's cell."""
        return cell_key(self.cell)

    def to_json(self) -> dict:
        """The record as the JSON object written to ``records.jsonl``."""
        return {"schema": self.schema, "run_id": self.run_id, "cell": self.cell,
                "status": self.status, "error": self.error, "metrics": self.metrics,
                "labels": self.labels, "raw": self.raw, "env": self.env}

    @classmethod
    def from_json(cls, data) -> Record:
        """A record from its JSON object; ``ValueError`` naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a record is a JSON object, got {type(data).__name__}")
        schema = data.get("schema", 1)
        if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
            raise ValueError(f"record schema must be a positive integer, got {schema!r}")
        if schema > SCHEMA_VERSION:
            raise ValueError(f"record schema {schema} is newer than this version reads "
                             f"({SCHEMA_VERSION}): upgrade xent-bench")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown record field(s): {', '.join(sorted(unknown))}")
        for name in ("run_id", "cell", "status"):
            if name not in data:
                raise ValueError(f"record has no {name!r}")
        return cls(**data | {"schema": schema})


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or value is None


# Integers of a record are at most 64-bit (what NumPy and pandas hold); the sizes of a case at
# most 2**40 (rows or classes), so products such as bytes moved stay far inside int64.
MAX_INT = 2**63 - 1
MAX_DIMENSION = 2**40


def oversized_int(value, where: str = "record") -> str | None:
    """The place of the first integer outside int64 anywhere in ``value``, or None."""
    stack = [(where, value)]
    while stack:
        place, item = stack.pop()
        if isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_INT:
            return place
        if isinstance(item, dict):
            stack.extend((f"{place} {k}", v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{place}[{i}]", v) for i, v in enumerate(item))
    return None


def _is_finite_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _check_cell_words(cell: dict) -> None:
    """The cell's words are the suite's: kind, dtype, pass, device and form from the
    vocabulary, and framework / variant / form those of its implementation id."""
    for key, known in (("kind", KINDS), ("dtype", tuple(DTYPES)), ("pass", PASSES),
                       ("device", DEVICES)):
        if cell[key] not in known:
            raise ValueError(f"record cell {key} must be one of {', '.join(known)}, got "
                             f"{str(cell[key])[:80]!r}")
    parts = str(cell["impl"]).split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"record cell impl must be framework/variant/form, got "
                         f"{str(cell['impl'])[:80]!r}")
    for key, part in zip(("framework", "variant", "form"), parts, strict=True):
        if cell[key] != part:
            raise ValueError(f"record cell {key} {str(cell.get(key))[:80]!r} is not that of "
                             f"its implementation {cell['impl']!r}")
    if parts[2] not in FORMS:
        raise ValueError(f"record cell form must be one of {', '.join(FORMS)}, got {parts[2]!r}")


def validate(record: Record) -> None:
    """``ValueError`` naming the first field of ``record`` that breaks the schema."""
    schema = record.schema
    if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= SCHEMA_VERSION:
        raise ValueError(f"record schema must be an integer from 1 to {SCHEMA_VERSION}, got "
                         f"{schema!r}")
    if not files.is_safe_name(record.run_id):
        raise ValueError(f"record run_id must be a name of letters, digits and ._- (at most 128), "
                         f"got {str(record.run_id)[:80]!r}")
    if not isinstance(record.cell, dict):
        raise ValueError(f"record cell must be an object, got {type(record.cell).__name__}")
    missing = [k for k in REQUIRED_CELL_KEYS if k not in record.cell]
    if missing:
        raise ValueError(f"record cell lacks {', '.join(missing)}")
    oversized = oversized_int(record.to_json())
    if oversized:
        raise ValueError(f"{oversized} is an integer beyond 64 bits")
    for k in TEXT_CELL_KEYS:
        v = record.cell.get(k)
        if v is not None and (not isinstance(v, str) or CELL_TEXT.fullmatch(v) is None):
            raise ValueError(f"record cell {k} must be letters, digits and _.+-/ (at most 200), "
                             f"got {str(v)[:80]!r}")
    for k in ("n", "c", "seed"):
        v = record.cell[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"record cell {k} must be a non-negative integer, got {v!r}")
    for k in ("n", "c"):
        if record.cell[k] > MAX_DIMENSION:
            raise ValueError(f"record cell {k} must be at most 2**40, got {record.cell[k]}")
    if not _is_finite_number(record.cell["scale"]):
        raise ValueError(f"record cell scale must be a finite number, got "
                         f"{str(record.cell['scale'])[:80]!r}")
    _check_cell_words(record.cell)
    if record.status not in STATUSES:
        raise ValueError(f"record status must be one of {', '.join(STATUSES)}, got "
                         f"{record.status!r}")
    if record.error is not None and not isinstance(record.error, str):
        raise ValueError(f"record error must be a string or null, got {record.error!r}")
    for name in ("metrics", "labels", "raw", "env"):
        value = getattr(record, name)
        if not isinstance(value, dict):
            raise ValueError(f"record {name} must be an object, got {type(value).__name__}")
    for name, value in record.metrics.items():
        if not _is_number(value):
            raise ValueError(f"record metric {name!r} must be a number or null, got {value!r}")
    if record.status == "ok" and record.cell["kind"] == "timing":
        # what every timing table ranks by and divides by
        median = record.metrics.get("median_s")
        if not (_is_finite_number(median) and median >= 0):
            raise ValueError(f"a timing record of status ok needs a finite non-negative "
                             f"median_s, got {median!r}")
        rounds = record.metrics.get("rounds")
        if rounds is not None and not (_is_finite_number(rounds) and rounds >= 0):
            raise ValueError(f"record metric 'rounds' must be a finite count, got {rounds!r}")
    times = record.raw.get("times_s")
    if times is not None and not (isinstance(times, list) and all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t)
            and t >= 0 for t in times)):
        raise ValueError("record raw times_s must be a list of non-negative finite seconds")


class RecordWriteError(files.WriteError):
    """A record could not be written to ``records.jsonl`` (a full disk, a read-only folder, a
    file size limit): the run stops; the records written before it are intact."""


# The status of the failure a worker reports (protocol CELL_ERROR) when it cannot write.
CANNOT_WRITE = "cannot_write"


def append_record(run_dir: Path, record: Record) -> None:
    """Append one record as a single line and force it to disk.

    Raises :class:`RecordWriteError` when the line cannot be written; whatever part of it
    reached the file is cut off again, so the file still ends at the last whole record."""
    if not isinstance(record, Record):
        raise TypeError(f"append_record takes a Record, got {type(record).__name__}")
    line = json.dumps(record.to_json(), separators=(",", ":"), allow_nan=True) + "\n"
    path = Path(run_dir) / RECORDS
    data = memoryview(line.encode("utf-8"))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:  # os.write may write part of the line (a disk filling up)
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, end)  # no cut-off line left behind
                raise
        finally:
            os.close(fd)
    except OSError as exc:
        error = RecordWriteError(
            f"cannot write {path}: {exc.strerror or exc}; the records written before it are "
            f"kept (once it can be written, --resume {run_dir} finishes the run)")
        error.errno = exc.errno
        raise error from exc


def load_records(run_dir: Path) -> list[Record]:
    """All valid records of a run, in file order. A line that is not JSON (a write cut off by a
    crash) is skipped with a ``TruncatedRecordWarning``; a JSON line that is not a record of
    this schema is skipped with an ``InvalidRecordWarning`` naming what is wrong."""
    path = Path(run_dir) / RECORDS
    if not path.exists():
        return []
    files.check_readable(path, files.MAX_RECORDS_BYTES)
    records = []
    with open(path, encoding="utf-8", errors="replace") as fh:  # bad bytes: a malformed line
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if len(records) >= files.MAX_RECORDS:
                raise ValueError(f"{path} holds more than {files.MAX_RECORDS} records, more "
                                 "than a run folder may hold; refusing to read it")
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, RecursionError):  # RecursionError: [[[[... a line deep
                warnings.warn(
                    f"{path}:{lineno}: skipping a truncated or malformed record "
                    f"({len(line)} bytes: {line[:60]!r}...)",
                    TruncatedRecordWarning,
                    stacklevel=2,
                )
                continue
            try:
                records.append(Record.from_json(data))
            except (ValueError, TypeError) as exc:
                warnings.warn(f"{path}:{lineno}: skipping an invalid record: {exc}",
                              InvalidRecordWarning, stacklevel=2)
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


def finished_keys(records: list[Record]) -> set[str]:
    """Keys of cells that have a final record (ok, error or oom)."""
    return {r.key for r in records}
