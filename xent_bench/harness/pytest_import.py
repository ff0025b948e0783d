"""Turn a pytest-benchmark JSON file into a run folder, so that it gets the same tidy records
and the same report as a runner run.

Each benchmark of ``benchmarks/test_cross_entropy.py`` carries its cell keys and metrics in
``extra_info`` and its raw round times in ``extra_info["times_s"]`` (also in ``stats["data"]``
with ``--benchmark-save-data``). The summary statistics are recomputed from the raw times with
the runner's own code, so both sources report identical columns computed identically.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path

from xent_bench.harness import floor, runner
from xent_bench.harness.cells import CELL_KEYS
from xent_bench.harness.records import RECORDS, append_record
from xent_bench.harness.timing import Timing

# extra_info keys that are labels (strings), not metrics.
LABELS = ("cache_mode",)
NOT_METRICS = set(CELL_KEYS) | {"cell_key", "threads", "threads_applied", "sync", "times_s",
                                "device_name", *LABELS}


def _record(bench: dict, run_id: str, xent: dict, ceilings: dict | None) -> dict:
    info = bench.get("extra_info") or {}
    missing = [k for k in ("impl", "n", "c", "dtype", "pass", "device") if k not in info]
    if missing:
        raise ValueError(f"benchmark {bench.get('name')!r} has no xent-bench extra_info "
                         f"(missing {', '.join(missing)}); was it made by benchmarks/"
                         "test_cross_entropy.py?")
    cell = {k: info.get(k) for k in CELL_KEYS}
    cell |= {"kind": "timing", "scale": float(info.get("scale", 1.0)),
             "seed": int(info.get("seed", 0))}
    times = info.get("times_s") or (bench.get("stats") or {}).get("data") or []
    metrics = {k: float(v) for k, v in info.items()
               if k not in NOT_METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)}
    if times:
        metrics |= Timing(first_call_s=metrics.get("first_call_s", float("nan")),
                          times_s=list(times)).summary()
        if ceilings:
            cost = floor.modelled_cost(cell["n"], cell["c"], cell["dtype"], cell["form"],
                                       cell["pass"])
            metrics |= cost | floor.floor_metrics(cost, cell["pass"], ceilings, metrics["median_s"])
    fw = cell["framework"]
    env = {
        "cpu_model": xent.get("cpu_model"),
        "git_commit": xent.get("git_commit"),
        "device": cell["device"],
        "versions": (xent.get("versions") or {}).get(fw, {}),
        "device_name": info.get("device_name"),
        "threads": info.get("threads", xent.get("threads")),
        "threads_applied": info.get("threads_applied"),
        "sync": info.get("sync"),
        "allocator": xent.get("allocator", "default"),
        "source": "pytest-benchmark",
    }
    return {"run_id": run_id, "cell": cell, "status": "ok", "error": None, "metrics": metrics,
            "labels": {k: info[k] for k in LABELS if k in info}, "raw": {"times_s": list(times)},
            "env": env}


def _read(json_path: Path) -> dict:
    try:
        data = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read pytest-benchmark JSON {json_path}: {exc}") from None
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{json_path} is not a pytest-benchmark JSON file (no 'benchmarks')")
    return data


def _run_id(data: dict, json_path: Path) -> str:
    """The run id of an imported file: its timestamp and a digest of its bytes."""
    stamp = _dt.datetime.fromisoformat(data.get("datetime", _dt.datetime.now().isoformat()))
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
    ceilings = xent.get("ceilings")
    run_id = _run_id(data, json_path)
    run_dir = Path(results) / run_id
    if (run_dir / RECORDS).exists():
        raise ValueError(f"{json_path} was already imported into {run_dir}")
    records = [_record(b, run_id, xent, (ceilings or {}).get("best"))
               for b in data["benchmarks"]]
    cells = [r["cell"] for r in records]
    run_dir.mkdir(parents=True, exist_ok=True)
    commit = (data.get("commit_info") or {}).get("id") or xent.get("git_commit") or "unknown"
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
            "cpu_model": xent.get("cpu_model") or (machine.get("cpu") or {}).get("brand_raw"),
            "cpu_count": (machine.get("cpu") or {}).get("count"),
            "git_commit": commit[:12] + ("-dirty" if (data.get("commit_info") or {}).get("dirty")
                                         else ""),
            "started": data.get("datetime"),
        },
        "notes": [],
        "cells": cells,
        "finished": data.get("datetime"),
    }
    if ceilings:
        meta["ceilings"] = ceilings
    else:
        meta["notes"].append("no machine ceilings in the JSON: GB/s and % of limit are missing")
    runner.write_meta(run_dir, meta)
    for record in records:
        append_record(run_dir, record)
    return run_dir
