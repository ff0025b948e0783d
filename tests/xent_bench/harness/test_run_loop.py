"""The shared run loop and the launch watcher: which cells get records, which get errors, what
a fresh launch takes over, and how a launch's end is read from its processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from xent_bench.harness.cells import cell_key
from xent_bench.harness.launch import WORKER_LOG, Launch, watch
from xent_bench.harness.progress import Progress
from xent_bench.harness.records import Record, append_record, load_records
from xent_bench.harness.run_loop import Failure, pending, run_groups

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "tests" / "plugins"  # protocol_worker.py: a scripted stand-in worker


def _cell(impl: str, n: int) -> dict:
    framework, variant, form = impl.split("/")
    return {"kind": "timing", "impl": impl, "framework": framework, "form": form,
            "variant": variant, "n": n, "c": 10, "dtype": "float32", "scale": 1.0, "seed": 0,
            "pass": "forward", "device": "cpu", "probe": ""}


CELLS = [_cell("torch/native/sparse", n) for n in (1, 2, 3)] + [
    _cell("jax/optax/sparse", n) for n in (1, 2)]


def _ok(cell: dict) -> Record:
    return Record(run_id="r", cell=cell, status="ok", metrics={"median_s": 1e-3})


def _error(cell: dict, failure: Failure) -> Record:
    return Record(run_id="r", cell=cell, status=failure.status, error=failure.message)


def _run(tmp_path, script):
    """Run the loop over CELLS with a fake launch: ``script[(framework, attempt)]`` is the number
    of cells that launch finishes and how it ends (None: cleanly; an int or "start-up": fails in
    that cell / before its first cell)."""
    calls = []

    def launch_group(fw, remaining, attempt, bar):
        calls.append((fw, attempt, [c["n"] for c in remaining]))
        done, fails = script.get((fw, attempt), (len(remaining), None))
        for cell in remaining[:done]:
            append_record(tmp_path, _ok(cell))
        if fails is None:
            return None
        return Failure(None if fails == "start-up" else fails, "error", "worker died")

    run_groups(tmp_path, CELLS, group_of=lambda c: c["framework"], label_of=str,
               launch_group=launch_group, error_record=_error,
               progress=Progress(len(CELLS), 0, enabled=False))
    return calls, {r.cell["impl"] + str(r.cell["n"]): r.status for r in load_records(tmp_path)}


def test_clean_launches_measure_each_group_once(tmp_path):
    calls, status = _run(tmp_path, {})
    assert calls == [("torch", 1, [1, 2, 3]), ("jax", 1, [1, 2])]
    assert set(status.values()) == {"ok"} and len(status) == 5


def test_the_cell_a_launch_died_in_is_an_error_and_a_fresh_launch_takes_the_rest(tmp_path):
    calls, status = _run(tmp_path, {("torch", 1): (1, 1)})  # finished cell 0, died in cell 1
    assert calls[:2] == [("torch", 1, [1, 2, 3]), ("torch", 2, [3])]
    assert status["torch/native/sparse2"] == "error"
    assert status["torch/native/sparse1"] == status["torch/native/sparse3"] == "ok"


def test_a_launch_that_fails_before_its_first_cell_fails_the_group(tmp_path):
    calls, status = _run(tmp_path, {("jax", 1): (0, "start-up")})
    assert calls == [("torch", 1, [1, 2, 3]), ("jax", 1, [1, 2])]
    assert status["jax/optax/sparse1"] == status["jax/optax/sparse2"] == "error"


def test_cells_with_a_record_are_not_measured_again(tmp_path):
    append_record(tmp_path, _ok(CELLS[1]))
    assert [c["n"] for c in pending(CELLS, tmp_path)] == [1, 3, 1, 2]
    calls, _ = _run(tmp_path, {})
    assert calls[0] == ("torch", 1, [1, 3])
    assert sorted(cell_key(r.cell) for r in load_records(tmp_path)) == sorted(
        cell_key(c) for c in CELLS)


# --------------------------------------------------------------------------------------------
# Real processes through Launch and watch


def _watch(tmp_path, script, *, processes=1, timeout_s=30.0):
    env = dict(os.environ) | {"PYTHONPATH": os.pathsep.join(
        [str(PLUGINS), str(REPO), os.environ.get("PYTHONPATH", "")])}
    task = {"script": script, "cells": CELLS}
    launch = Launch("protocol_worker", task, [env] * processes, tmp_path, "test")
    return watch(launch, CELLS, Progress(len(CELLS), 0, enabled=False), timeout_s, timeout_s)


def test_a_clean_launch_is_ok(tmp_path):
    outcome = _watch(tmp_path, [["start", 0], ["start", 1], ["finished"]])
    assert outcome.ok and outcome.current is None and outcome.codes == [0]
    assert "test worker (exited with status 0)" in (tmp_path / WORKER_LOG).read_text()
    assert not list(tmp_path.glob(".task-*")) and not list(tmp_path.glob(".log-*"))


def test_a_crash_right_after_fast_starts_names_the_last_cell(tmp_path):
    """Every line written before a crash is read before the cell is named."""
    script = [["start", i] for i in range(5)] + [["print", "some noise"], ["signal", "SIGKILL"]]
    outcome = _watch(tmp_path, script)
    assert not outcome.ok and outcome.current == 4
    assert outcome.codes == [-9] and outcome.phase == "the cell"


def test_a_hang_is_killed_at_the_deadline(tmp_path):
    outcome = _watch(tmp_path, [["start", 2], ["sleep", 60]], timeout_s=1.0)
    assert outcome.timed_out and outcome.current == 2 and outcome.codes == [None]


def test_ceilings_and_cell_errors_are_captured(tmp_path):
    outcome = _watch(tmp_path, [["ceilings", {"exp_Gps": 2.5}], ["finished"]])
    assert outcome.ok and outcome.ceilings == {"exp_Gps": 2.5}
    outcome = _watch(tmp_path, [["start", 0], ["cell_error", "oom", "MemoryError"], ["exit", 1]],
                     processes=2)
    assert outcome.codes[0] == 1 or outcome.codes[1] == 1
    assert {e["status"] for e in outcome.cell_errors.values()} == {"oom"}
    assert outcome.current == 0


def test_an_exit_with_status_0_before_finished_is_not_ok(tmp_path):
    outcome = _watch(tmp_path, [["start", 0], ["start", 1], ["exit", 0]])
    assert not outcome.ok and not outcome.finished
    assert outcome.codes == [0] and outcome.current == 1


def test_printed_lines_are_not_the_protocol(tmp_path):
    """What a worker prints on its standard output goes to its log; only its protocol channel
    counts (an implementation printing "START 3" or "FINISHED" changes nothing)."""
    outcome = _watch(tmp_path, [["print", "START 3"], ["print", "FINISHED"], ["start", 0],
                                ["exit", 0]])
    assert not outcome.ok and outcome.current == 0
    assert "START 3" in (tmp_path / WORKER_LOG).read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="process groups as on Linux")
def test_the_whole_process_group_is_torn_down(tmp_path):
    outcome = _watch(tmp_path, [["sleep", 60]], processes=2, timeout_s=1.0)
    assert outcome.timed_out and outcome.phase == "start-up"
    assert outcome.codes == [None, None]  # both were still running, and were killed
