"""Turn a pytest-benchmark JSON file into a run folder, so that it gets the same tidy records
and the same report as a runner run.

Each benchmark of ``benchmarks/test_cross_entropy.py`` carries its cell keys and metrics in
``extra_info`` and its raw round times in ``extra_info["times_s"]`` (also in ``stats["data"]``
with ``--benchmark-save-data``). Its summary statistics and floor metrics were computed by the
runner's own code (``worker.measure_timing``, with the per-round stall statistics) and are kept;
for a file whose ``extra_info`` lacks them they are computed here from the raw times with the
same code, so both sources report identical columns computed identically.

Every benchmark becomes a ``records.Record``. A malformed file raises a ``ValueError`` naming
the file, the benchmark and what is wrong (the command line turns it into exit status 2), and
nothing is written.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from pathlib import Path

from xent_bench.harness import files, floor, runner
from xent_bench.harness.cells import CELL_KEYS
from xent_bench.harness.records import RECORDS, Record, append_record, oversized_int
from xent_bench.harness.timing import Timing

# extra_info keys that are labels (strings), not metrics.
LABELS = ("cache_mode", "stall_source")
NOT_METRICS = set(CELL_KEYS) | {"cell_key", "threads", "threads_applied", "sync", "times_s",
                                "clean", "device_name", "ceilings", "git_commit", "versions",
                                "cpus", *LABELS}
# extra_info keys every benchmark of benchmarks/test_cross_entropy.py carries.
REQUIRED_INFO = ("impl", "n", "c", "dtype", "pass", "device")
CEILING_KEYS = ("copy_GBps", "read_GBps", "exp_Gps")


def _object(value, where: str) -> dict:
    """``value`` if it is a JSON object, ``{}`` if absent; ``ValueError`` naming ``where``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value



def _cpus(value) -> list[int] | None:
    """The session's CPU affinity from an untrusted file: a list of CPU numbers, or None."""
    ok = isinstance(value, list) and all(isinstance(c, int) and not isinstance(c, bool)
                                         for c in value)
    return value if ok else None

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _times(info: dict, bench: dict) -> list[float]:
    """The benchmark's raw round times: ``extra_info["times_s"]``, else ``stats["data"]``."""
    times = info.get("times_s") or _object(bench.get("stats"), "stats").get("data") or []
    if not isinstance(times, list) or not all(
            _is_number(t) and math.isfinite(t) and t >= 0 for t in times):
        raise ValueError("times_s (or stats.data) must be a list of non-negative finite seconds")
    return [float(t) for t in times]


def _clean(info: dict, times: list[float]) -> dict:
    """``{"clean": [...]}``: which rounds did not wait for a CPU, where the benchmark says."""
    clean = info.get("clean")
    if clean is None:
        return {}
    if not (isinstance(clean, list) and len(clean) == len(times)
            and all(isinstance(c, bool) for c in clean)):
        raise ValueError("extra_info clean must be a list of true/false, one per round")
    return {"clean": clean}


def _cell(info: dict) -> dict:
    missing = [k for k in REQUIRED_INFO if k not in info]
    if missing:
        raise ValueError(f"no xent-bench extra_info (missing {', '.join(missing)}); was it made "
                         "by benchmarks/test_cross_entropy.py?")
    impl = info["impl"]
    parts = impl.split("/") if isinstance(impl, str) else []
    if len(parts) != 3:
        raise ValueError(f"extra_info impl must be an id framework/variant/form, got {impl!r}")
    cell = {k: info.get(k) for k in CELL_KEYS}
    for key, part in zip(("framework", "variant", "form"), parts):
        cell[key] = cell[key] if cell[key] is not None else part
    for key in ("n", "c", "seed"):
        value = info.get(key, 0)
        if not _is_number(value) or not math.isfinite(value) or value != int(value) or value < 0:
            raise ValueError(f"extra_info {key} must be a non-negative integer, got {value!r}")
        cell[key] = int(value)
    scale = info.get("scale", 1.0)
    if not _is_number(scale):
        raise ValueError(f"extra_info scale must be a number, got {scale!r}")
    return cell | {"kind": "timing", "scale": float(scale)}


def _record(bench: dict, run_id: str, xent: dict, ceilings: dict | None) -> Record:
    """The record of one benchmark; ``ValueError`` naming what is wrong with it."""
    info = _object(bench.get("extra_info"), "extra_info")
    cell = _cell(info)
    times = _times(info, bench)
    metrics = {k: float(v) for k, v in info.items() if k not in NOT_METRICS and _is_number(v)}
    # Times and round counts are durations and counts: a negative or non-finite one is a
    # crafted or broken file, not a measurement (other metrics may be inf: an error of a
    # non-finite loss).
    bad = [k for k, v in metrics.items()
           if (k.endswith("_s") or k.endswith("rounds")) and not (math.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"extra_info {', '.join(sorted(bad))} must be non-negative and finite")
    if times and "median_s" not in metrics:
        # A file without the benchmark's own summary: the runner's statistics of its rounds.
        metrics |= Timing(first_call_s=metrics.get("first_call_s", float("nan")),
                          times_s=times).summary()
    if "median_s" in metrics and "pct_of_limit" not in metrics and ceilings:
        cost = floor.modelled_cost(cell["n"], cell["c"], cell["dtype"], cell["form"],
                                   cell["pass"])
        metrics |= cost | floor.floor_metrics(cost, cell["pass"], ceilings, metrics["median_s"])
    env = {
        "cpu_model": xent.get("cpu_model"),
        # Files from before these moved into extra_info keep them in machine_info.xent.
        "git_commit": info.get("git_commit", xent.get("git_commit")),
        "device": cell["device"],
        "versions": (_object(info.get("versions"), "extra_info versions") if "versions" in info
                     else _object(xent.get("versions"), "machine_info.xent.versions").get(
                         cell["framework"], {})),
        "device_name": info.get("device_name"),
        "threads": info.get("threads", xent.get("threads")),
        "threads_applied": info.get("threads_applied"),
        "cpus": _cpus(info.get("cpus", xent.get("cpus"))),
        "sync": info.get("sync"),
        "allocator": xent.get("allocator", "default"),
        "source": "pytest-benchmark",
    }
    return Record(run_id=run_id, cell=cell, status="ok", metrics=metrics,
                  labels={k: info[k] for k in LABELS if k in info},
                  raw={"times_s": times, **_clean(info, times)}, env=env)


def _records(data: dict, json_path: Path, run_id: str) -> list[Record]:
    """Every benchmark's record; ``ValueError`` naming the file, the benchmark and the problem."""
    xent = (data.get("machine_info") or {}).get("xent") or {}
    ceilings = _ceilings(session_ceilings(data), json_path)
    records, seen = [], {}
    for i, bench in enumerate(data["benchmarks"]):
        name = bench.get("name", f"#{i}") if isinstance(bench, dict) else f"#{i}"
        try:
            if not isinstance(bench, dict):
                raise ValueError(f"a benchmark is a JSON object, got {type(bench).__name__}")
            record = _record(bench, run_id, xent, ceilings)
            # Two benchmarks of one cell would be pooled as if they were repeats of it.
            if record.key in seen:
                raise ValueError(f"measures the same cell as benchmark {seen[record.key]!r}")
            seen[record.key] = name
            records.append(record)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{json_path}: benchmark {name!r}: {exc}") from None
    return records


def session_ceilings(data: dict) -> tuple[object, str]:
    """The session's best ceilings as found in the file, and where: the first benchmark's
    ``extra_info["ceilings"]``, or ``machine_info.xent.ceilings.best`` (files written before
    the ceilings moved out of ``machine_info``)."""
    for bench in data.get("benchmarks") or []:
        info = bench.get("extra_info") if isinstance(bench, dict) else None
        if isinstance(info, dict) and "ceilings" in info:
            return info["ceilings"], "extra_info ceilings"
    xent = (data.get("machine_info") or {}).get("xent") or {}
    if not isinstance(xent, dict):
        return None, "machine_info.xent"
    old = xent.get("ceilings")
    if isinstance(old, dict):
        return old.get("best"), "machine_info.xent.ceilings.best"
    return old, "machine_info.xent.ceilings"


def _ceilings(found: tuple[object, str], json_path: Path) -> dict | None:
    """The session's best ceilings (:func:`session_ceilings`), checked, or None."""
    value, where = found
    try:
        best = _object(value, where)
    except ValueError as exc:
        raise ValueError(f"{json_path}: {exc}") from None
    if not best:
        return None
    bad = [k for k in CEILING_KEYS if not _is_number(best.get(k)) or best[k] <= 0]
    if bad:
        raise ValueError(f"{json_path}: {where} needs positive {', '.join(bad)}")
    return best


def _read(json_path: Path) -> dict:
    files.check_readable(json_path, files.MAX_RECORDS_BYTES)  # a regular file, bounded
    try:
        data = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"cannot read pytest-benchmark JSON {json_path}: {exc}") from None
    oversized = oversized_int(data, "the file's")
    if oversized:
        raise ValueError(f"{json_path}: {oversized} is an integer beyond 64 bits")
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{json_path} is not a pytest-benchmark JSON file (no 'benchmarks')")
    if not isinstance(data["benchmarks"], list):
        raise ValueError(f"{json_path}: 'benchmarks' must be a list, got "
                         f"{type(data['benchmarks']).__name__}")
    try:
        machine = _object(data.get("machine_info"), "machine_info")
        _object(machine.get("xent"), "machine_info.xent")
        _object(machine.get("cpu"), "machine_info.cpu")
        _object(data.get("commit_info"), "commit_info")
    except ValueError as exc:
        raise ValueError(f"{json_path}: {exc}") from None
    return data


def _run_id(data: dict, json_path: Path) -> str:
    """The run id of an imported file: its timestamp and a digest of its bytes."""
    when = data.get("datetime")
    try:
        stamp = _dt.datetime.now() if when is None else _dt.datetime.fromisoformat(when)
    except (TypeError, ValueError):
        raise ValueError(f"{json_path}: 'datetime' must be an ISO 8601 time, got "
                         f"{when!r}") from None
    digest = hashlib.sha1(json_path.read_bytes()).hexdigest()[:6]
    return f"{stamp.strftime('%Y%m%d-%H%M%S')}-pytest-benchmark-{digest}"


def import_or_reuse(json_path: Path, results: Path) -> Path:
    """The run folder of a pytest-benchmark JSON file: imported under ``results`` on first
    use, the existing folder afterwards (so ``compare`` can be given the same file twice)."""
    json_path = Path(json_path)
    run_dir = Path(results) / _run_id(_read(json_path), json_path)
    return run_dir if (run_dir / RECORDS).exists() else import_json(json_path, results)


def import_json(json_path: Path, results: Path) -> Path:
    """Write a run folder under ``results`` from a pytest-benchmark JSON file; returns it."""
    json_path = Path(json_path)
    data = _read(json_path)
    machine = data.get("machine_info") or {}
    xent = machine.get("xent") or {}
    best = _ceilings(session_ceilings(data), json_path)
    run_id = _run_id(data, json_path)
    run_dir = Path(results) / run_id
    if (run_dir / RECORDS).exists():
        raise ValueError(f"{json_path} was already imported into {run_dir}")
    records = _records(data, json_path, run_id)
    cells = [r.cell for r in records]
    cpu = machine.get("cpu") or {}
    commit_info = data.get("commit_info") or {}
    commit = str(commit_info.get("id") or xent.get("git_commit") or "unknown")
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "run_id": run_id,
        "kind": "timing",
        "source": {"pytest-benchmark": str(json_path), "version": data.get("version")},
        "preset": xent.get("preset"),
        "device": cells[0]["device"] if cells else "cpu",
        "threads": xent.get("threads"),
        "allocator": xent.get("allocator", "default"),
        "machine": {
            "hostname": machine.get("node"),
            "platform": f"{machine.get('system')} {machine.get('release')}",
            "python": machine.get("python_version"),
            "cpu_model": xent.get("cpu_model") or cpu.get("brand_raw"),
            "cpu_count": cpu.get("count"),
            "git_commit": commit[:12] + ("-dirty" if commit_info.get("dirty") else ""),
            "started": data.get("datetime"),
        },
        "notes": [],
        "cells": cells,
        "finished": data.get("datetime"),
    }
    if best:
        meta["ceilings"] = {"best": best}
    else:
        meta["notes"].append("no machine ceilings in the JSON: GB/s and % of limit are missing")
    runner.write_meta(run_dir, meta)
    for record in records:
        append_record(run_dir, record)
    return run_dir
