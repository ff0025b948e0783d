"""The pytest-benchmark suite: grouping, extra_info, and the same columns and statistics as a
runner run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xent_bench.analysis.run import load_run
from xent_bench.harness.pytest_import import import_json
from xent_bench.reports.run_report import write_reports

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
IMPLS = ("torch/native/sparse", "tensorflow/native/sparse")
SIZE = "512x8000"  # 16 MB of float32 logits: large enough that time is not call overhead
BUDGET = "0.4"  # seconds of rounds per cell: enough rounds for a stable median
EXTRA_INFO_KEYS = ("impl", "framework", "form", "variant", "n", "c", "dtype", "pass", "device",
                   "threads", "model_bytes", "loss_err_eps", "median_s", "pct_of_limit",
                   "times_s")


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory):
    """The same cells measured by pytest-benchmark and by the runner, each turned into a report."""
    tmp = tmp_path_factory.mktemp("suite")
    json_path = tmp / "bench.json"
    impl_args = [a for impl in IMPLS for a in ("--xent-impl", impl)]
    pytest_run = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-only", "-p",
         "no:cacheprovider", "--xent-preset", "smoke", "--xent-size", SIZE, "--xent-budget",
         BUDGET, *impl_args,
         f"--benchmark-json={json_path}", "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=dict(os.environ),
    )
    assert pytest_run.returncode == 0, pytest_run.stdout[-3000:] + pytest_run.stderr[-3000:]
    from_pytest = import_json(json_path, tmp / "results")
    write_reports(from_pytest)

    runner_run = subprocess.run(
        [sys.executable, "-m", "xent_bench", "run", "--preset", "smoke", "--size", SIZE,
         "--budget", BUDGET, "--repeats", "1",  # pytest-benchmark measures each cell once
         *[a for impl in IMPLS for a in ("--impl", impl)], "--results", str(tmp / "runner"),
         "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert runner_run.returncode == 0, runner_run.stderr[-3000:]
    (from_runner,) = (tmp / "runner").iterdir()
    return {"stdout": pytest_run.stdout, "json": json.loads(json_path.read_text()),
            "pytest": from_pytest, "runner": from_runner}


def test_console_table_groups_by_case(both_runs):
    for pass_ in ("forward", "forward_backward"):
        assert f"benchmark '{SIZE} float32 {pass_} cpu': 2 tests" in both_runs["stdout"]


def test_extra_info_has_every_record_key(both_runs):
    benchmarks = both_runs["json"]["benchmarks"]
    assert len(benchmarks) == 4
    for bench in benchmarks:
        missing = [k for k in EXTRA_INFO_KEYS if k not in bench["extra_info"]]
        assert not missing, f"{bench['name']} lacks {missing}"
        assert bench["extra_info"]["impl"] in IMPLS
        assert len(bench["extra_info"]["times_s"]) == bench["stats"]["rounds"]
        # What changes between sessions is in each benchmark, not in machine_info.
        assert bench["extra_info"]["ceilings"]["exp_Gps"] > 0
        assert bench["extra_info"]["framework"] in bench["extra_info"]["versions"]
        assert bench["extra_info"]["git_commit"]
    xent = both_runs["json"]["machine_info"]["xent"]
    assert not {"ceilings", "git_commit", "cpus", "threads_applied"} & set(xent)
    assert {"torch", "numpy"} <= set(xent["packages"])
    assert "hz_actual" not in both_runs["json"]["machine_info"]["cpu"]


def test_reports_have_the_same_columns(both_runs):
    a = pd.read_parquet(both_runs["pytest"] / "records.parquet")
    b = pd.read_parquet(both_runs["runner"] / "records.parquet")
    assert sorted(a.columns) == sorted(b.columns)
    assert sorted(set(a["metric"])) == sorted(set(b["metric"]))
    for path in ("report.md", "report.html"):
        assert (both_runs["pytest"] / path).stat().st_size > 0


def test_medians_are_those_of_the_recorded_rounds(both_runs):
    """Both sources report the median of the rounds they recorded, for every cell: of its clean
    rounds (a round that waited for a CPU is left out), or of all when none is clean (speed
    itself is not asserted: it is what the benchmarks measure, and this machine is noisy)."""
    for source in ("pytest", "runner"):
        records = pd.read_parquet(both_runs[source] / "records.parquet")
        raw = pd.read_parquet(both_runs[source] / "raw_times.parquet")
        clean = {(r.cell["impl"], r.cell["pass"]): r.raw.get("clean")
                 for r in load_run(both_runs[source]).records}
        medians = records[records["metric"] == "median_s"].set_index(["impl", "pass"])["value"]
        assert len(medians) == 2 * len(IMPLS), (source, medians)
        for (impl, pass_), median in medians.items():
            rounds = raw[(raw["impl"] == impl) & (raw["pass"] == pass_)]["time_s"].to_numpy()
            assert len(rounds) >= 5, (source, impl, pass_)
            flags = np.array(clean[(impl, pass_)] or [True] * len(rounds), dtype=bool)
            assert len(flags) == len(rounds), (source, impl, pass_)
            kept = rounds[flags] if flags.any() else rounds
            assert median == pytest.approx(float(np.median(kept)), rel=1e-12), (
                source, impl, pass_)

def _pytest_benchmark(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """One small pytest-benchmark session (one cell, 64 x 100) with its own storage."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-only", "-p",
         "no:cacheprovider", "--xent-preset", "smoke", "--xent-size", "64x100",
         "--xent-budget", "0.05", "--xent-impl", "torch/native/sparse",
         f"--benchmark-storage=file://{tmp_path / 'storage'}", *args, "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=dict(os.environ))


def test_pytest_benchmarks_own_workflow_save_compare_and_histogram(tmp_path):
    """--benchmark-autosave, then --benchmark-compare with --benchmark-compare-fail and
    --benchmark-histogram in a second session: no "machine_info is different" warning (which
    the warnings-as-errors setting would turn into a failure), a comparison table, a
    histogram. No speed is asserted."""
    first = _pytest_benchmark(tmp_path, "--benchmark-autosave")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    saved = list((tmp_path / "storage").rglob("*.json"))
    assert len(saved) == 1
    second = _pytest_benchmark(tmp_path, "--benchmark-compare", "--benchmark-compare-fail",
                               "median:1000%", f"--benchmark-histogram={tmp_path / 'hist'}")
    output = second.stdout + second.stderr
    # Whether the limit is crossed depends on the machine's speed in each session, which a test
    # must not judge: either outcome of --benchmark-compare-fail is fine, an internal error (the
    # "machine_info is different" warning turned into an error) is not.
    assert second.returncode == 0 or "Performance has regressed" in output, output[-3000:]
    assert "INTERNALERROR" not in output and "machine_info is different" not in output
    assert "Comparing against benchmarks from" in output and "(NOW)" in output
    assert list(tmp_path.glob("hist*.svg")), "no histogram written"


def test_a_selection_measures_ceilings_with_its_own_frameworks_only(tmp_path):
    """``-k`` leaves one torch benchmark of the smoke grid (which has numpy, torch, jax and
    tensorflow cells): the session imports and measures torch (and NumPy, as on every CPU run),
    not the frameworks it does not run."""
    json_path = tmp_path / "one.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-only", "-p",
         "no:cacheprovider", "--xent-preset", "smoke", "--xent-size", "64x100",
         "--xent-budget", "0.05", "-k", "torch/native/sparse and forward_backward",
         f"--benchmark-json={json_path}", "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (bench,) = json.loads(json_path.read_text())["benchmarks"]
    assert bench["extra_info"]["ceiling_frameworks"] == ["numpy", "torch"]
