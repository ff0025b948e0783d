"""The figures of ``xent-bench stability`` (``analysis.stability``) and its report
(``reports.stability_report``) on synthetic run folders: reruns as measured and with the
machine's shift taken out, speedups vs native, the loaded run's silent cells, cells above 100%
and peak memory across runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xent_bench.analysis import compare, stability
from xent_bench.analysis.run import load_run
from xent_bench.harness.records import Record, append_record
from xent_bench.reports import stability_report

MiB = 2.0**20
# One interleaved torch case (four cells) and a jax pair; times in ms.
BASE_MS = {"torch/native/sparse": 1.0, "torch/manual/sparse": 1.2, "torch/native/onehot": 1.5,
           "torch/manual/onehot": 1.6, "jax/optax/sparse": 0.8, "jax/manual/sparse": 0.9}


def _record(impl: str, ms: float, *, contended=0.0, pct=50.0, peak=4 * MiB, seed=0) -> Record:
    framework, variant, form = impl.split("/")
    cell = {"kind": "timing", "impl": impl, "framework": framework, "form": form,
            "variant": variant, "n": 256, "c": 1000, "dtype": "float32", "scale": 1.0,
            "seed": 0, "pass": "forward", "device": "cpu"}
    times = list(ms * 1e-3 * np.exp(np.random.default_rng(seed).normal(0.0, 0.01, 20)))
    metrics = {"median_s": float(np.median(times)), "iqr_rel": 0.01, "noisy": 0.0,
               "rounds": 20.0, "clean_rounds": 20.0, "contended": contended,
               "peak_extra_bytes": peak, "pct_of_limit": pct, "q1_s": ms * 0.99e-3,
               "q3_s": ms * 1.01e-3}
    return Record(run_id="r", cell=cell, status="ok", metrics=metrics, raw={"times_s": times},
                  env={"device": "cpu", "versions": {framework: "9.9"}})


def _run(path: Path, records: list[Record]) -> Path:
    path.mkdir(parents=True)
    meta = {"run_id": path.name, "kind": "timing", "preset": "test", "device": "cpu",
            "threads": 1, "min_rounds": 5, "machine": {}, "notes": [],
            "cells": [r.cell for r in records]}
    (path / "meta.json").write_text(json.dumps(meta))
    for rec in records:
        append_record(path, rec)
    return path


def _grid(tmp_path: Path, name: str, scale=None, seed=0, **per_impl) -> Path:
    """A run of ``BASE_MS`` with each cell's time times ``scale[framework]`` (the machine) and
    ``_record`` options per implementation (``per_impl[impl] = {...}``)."""
    scale = scale or {}
    records = [_record(impl, ms * scale.get(impl.split("/")[0], 1.0), seed=seed + i,
                       **per_impl.get(impl.replace("/", "_"), {}))
               for i, (impl, ms) in enumerate(BASE_MS.items())]
    return _run(tmp_path / name, records)


def test_reruns_are_counted_as_measured_and_with_the_machines_shift_taken_out(tmp_path):
    """The second quiet run found the machine 0.75x for torch: raw, no torch cell is within
    10%; over the common shift of its interleaved case, all are."""
    quiet = _grid(tmp_path, "quiet")
    again = _grid(tmp_path, "again", scale={"torch": 0.75}, seed=50)
    raw = stability.rerun_agreement(load_run(quiet), load_run(again))
    assert (raw.agree, raw.total) == (2, 6)  # the two jax cells
    assert raw.worst == pytest.approx(1 / 0.75, rel=0.03)
    table = compare.compare_runs(quiet, again).table
    shifted = stability.shifted_agreement(table)
    assert (shifted.agree, shifted.total) == (6, 6)
    assert shifted.worst < 1.05


def test_speedups_vs_native_compare_only_the_other_implementations(tmp_path):
    quiet = _grid(tmp_path, "quiet")
    again = _grid(tmp_path, "again", seed=50)
    # jax/manual 20% slower in a third run: its speedup vs optax moves by 1.2x.
    slow = _run(tmp_path / "slow", [
        _record(i, ms * (1.2 if i == "jax/manual/sparse" else 1.0), seed=k)
        for k, (i, ms) in enumerate(BASE_MS.items())])
    same = stability.ratio_agreement(load_run(quiet), load_run(again))
    assert same.total == 3 and same.agree == 3  # torch manual sparse/onehot, jax manual
    moved = stability.ratio_agreement(load_run(quiet), load_run(slow))
    assert (moved.agree, moved.total) == (2, 3)
    assert moved.worst == pytest.approx(1.2, rel=0.03)


def test_the_loaded_run_separates_flagged_from_silently_wrong_cells(tmp_path):
    quiet = _grid(tmp_path, "quiet")
    loaded = _run(tmp_path / "loaded", [
        _record("torch/native/sparse", 3.0, contended=1.0),  # off, but flagged
        _record("torch/manual/sparse", 2.4),  # off and not flagged: silently wrong
        *[_record(i, ms * 1.1, seed=k) for k, (i, ms) in enumerate(BASE_MS.items())
          if i not in ("torch/native/sparse", "torch/manual/sparse")]])
    check = stability.loaded_check(load_run(quiet), load_run(loaded))
    assert (check.total, check.within, check.contended, check.flagged) == (6, 4, 1, 1)
    assert len(check.silent) == 1 and check.silent[0].startswith("torch/manual/sparse 256x1000")
    assert float(check.silent[0].rsplit(": ", 1)[1].rstrip("x")) == pytest.approx(2.0, rel=0.03)


def test_cells_above_the_limit_and_peak_memory_across_runs(tmp_path):
    a = _grid(tmp_path, "a")
    b = _grid(tmp_path, "b", torch_native_sparse={"pct": 120.0, "peak": 4 * MiB + 0.5 * MiB},
              jax_optax_sparse={"peak": 8 * MiB})
    assert stability.over_limit(load_run(a)) == []
    (high,) = stability.over_limit(load_run(b))
    assert high.startswith("torch/native/sparse") and high.endswith("120%")
    memory = stability.memory_agreement([load_run(a), load_run(b)])
    # 0.5 MiB is within the 1 MiB floor; 4 -> 8 MiB is not.
    assert (memory.agree, memory.total) == (5, 6)
    assert memory.worst == pytest.approx(2.0)


def test_the_report_meets_its_targets_only_when_every_check_does(tmp_path):
    quiet = _grid(tmp_path, "quiet")
    loaded = _grid(tmp_path, "loaded", seed=20)
    again = _grid(tmp_path, "again", scale={"torch": 0.8}, seed=40)
    slowed = _run(tmp_path / "slowed", [
        _record(i, ms * 0.8 * (1.5 if i == "torch/native/sparse" else 1.0), seed=60 + k)
        for k, (i, ms) in enumerate(BASE_MS.items())])
    summary = stability_report.summarise(quiet, loaded, again, slowed, "torch/native/sparse",
                                         1.5)
    checks = {what: (measured, ok) for what, measured, ok in summary.checks}
    assert checks["quiet reruns: cells within 10%"][1] is False  # torch moved 0.8x
    measured, ok = checks["quiet reruns: cells within 10% once that shift is taken out (as "
                          "compare judges)"]
    assert ok and measured.startswith("6 of 6 (100%)")
    shift_row = [m for w, (m, ok) in checks.items() if "change of speed" in w]
    assert shift_row and shift_row[0].startswith("0.8")
    assert summary.slowed_verdicts == ["slower"] and summary.slowed_exit == 1
    assert not summary.targets_met  # the raw rerun check failed
    text = (stability_report.write(summary, tmp_path / "out")).read_text()
    assert "| quiet reruns: cells within 10% |" in text and "**no**" in text
