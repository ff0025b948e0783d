"""Progress: start-ups announced and counted, an estimate only once it means something and then
by the documented rule, plain lines at the phases, and the watcher's count of interleaved
cells. A fake clock drives every timing; nothing here depends on real time."""

from __future__ import annotations

import io
import os
import types
from pathlib import Path

import pytest

from xent_bench.harness import progress as progress_module
from xent_bench.harness.launch import Launch, watch
from xent_bench.harness.progress import Progress, clock
from xent_bench.harness.worker import interleaved_indices

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "tests" / "plugins"  # protocol_worker.py: a scripted stand-in worker
STARTUP = "torch: starting, measuring ceilings on cpu"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def at(self, seconds: float) -> None:
        """Move to ``seconds`` after the start."""
        self.now = 1000.0 + seconds


@pytest.fixture
def fake_clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def _lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def _torch_cells(p: Progress, fake_clock: FakeClock, first: float, cells: int,
                 each_s: float = 2.0) -> float:
    """``cells`` cells of ``each_s`` seconds from ``first``; returns the time after the last."""
    t = first
    for i in range(cells):
        fake_clock.at(t)
        p.start(f"torch cell {i}")
        t += each_s
        fake_clock.at(t)
        p.advance()
    return t


def test_clock():
    assert clock(0) == "0:00" and clock(28.4) == "0:28" and clock(158) == "2:38"
    assert clock(3723) == "1:02:03" and clock(-3) == "0:00"


def test_the_start_up_is_announced_and_counted(fake_clock, capsys):
    p = Progress(12, 0, enabled=True)
    p.expect_startups(2)
    p.startup(STARTUP)
    assert _lines(capsys) == [f"[0/12 cells, 0/2 start-ups] {STARTUP} (0:00 elapsed, estimating)"]
    fake_clock.at(10)
    p.start("torch cell 0")  # the first cell ends the start-up: it is a step done
    assert p.startups_done == 1 and p.startup_s == 10.0
    assert _lines(capsys) == ["[0/12 cells, 1/2 start-ups] torch cell 0 (0:10 elapsed, "
                              "estimating)"]


def test_a_launch_that_ends_in_its_start_up_counts_it(fake_clock):
    p = Progress(3, 0, enabled=False)
    p.expect_startups(1)
    p.startup(STARTUP)
    fake_clock.at(4)
    p.end_launch()
    assert (p.startups_done, p.startups_expected, p.startup_s) == (1, 1, 4.0)


def test_a_launch_beyond_those_planned_adds_its_start_up(fake_clock):
    p = Progress(3, 0, enabled=False)
    p.expect_startups(1)
    p.startup("torch: starting")
    p.end_launch()
    p.startup("torch: starting")  # a fresh launch after a crash
    assert (p.startups_begun, p.startups_expected) == (2, 2)


def test_no_estimate_before_it_means_something_then_the_documented_rule(fake_clock, capsys):
    p = Progress(12, 0, enabled=True)
    p.expect_startups(2)
    p.startup(STARTUP)
    fake_clock.at(10)  # a 10 s start-up, then cells of 2 s each
    _torch_cells(p, fake_clock, 10, 2)
    assert p.left_s() is None and p.estimate() == "estimating"  # 2 cells: too few
    _torch_cells(p, fake_clock, 14, 1)
    # 3 cells in 6 s of cells (the start-up is not in the rate): 2 s per cell x 9 cells left,
    # plus one start-up not begun at the 10 s the first one took.
    assert p.left_s() == pytest.approx(2 * 9 + 10)
    assert p.estimate() == "about 0:28 left"
    p.start("torch cell 3")
    fake_clock.at(17)  # 1 s into the cell under way
    assert p.left_s() == pytest.approx(2 * 9 - 1 + 10)
    fake_clock.at(40)  # a long cell (24 s so far): its time is taken off, never below 0
    assert p.left_s() == pytest.approx(0 + 10)
    capsys.readouterr()


def test_the_estimate_through_a_second_start_up(fake_clock):
    p = Progress(12, 0, enabled=False)
    p.expect_startups(2)
    p.startup(STARTUP)
    end = _torch_cells(p, fake_clock, 10, 6)  # 6 cells of 2 s: ends at 22
    p.end_launch()
    fake_clock.at(end + 1)  # the gap between launches is in neither rate
    p.startup("jax: starting, measuring ceilings on cpu")
    fake_clock.at(end + 5)  # 4 s into a start-up that is expected to take 10 s
    assert p.left_s() == pytest.approx(2 * 6 + (10 - 4))
    fake_clock.at(end + 13)  # past the expected time: nothing more for it
    assert p.left_s() == pytest.approx(2 * 6)
    p.start("jax cell 0")  # start-ups done: 10 s and 12 s
    assert p.startup_s == pytest.approx(22.0) and p.left_s() == pytest.approx(2 * 6)


def test_cells_recorded_before_a_resume_are_not_in_the_rate(fake_clock):
    p = Progress(12, 4, enabled=False)
    p.expect_startups(1)
    p.startup(STARTUP)
    _torch_cells(p, fake_clock, 10, 2, each_s=3.0)
    assert p.left_s() is None  # 6 of 12 done, but only 2 measured here
    _torch_cells(p, fake_clock, 16, 1, each_s=3.0)
    assert p.left_s() == pytest.approx(3.0 * 5)


def test_plain_lines_at_the_phases_and_at_most_every_plain_every_s(fake_clock, capsys):
    every = Progress.PLAIN_EVERY_S
    p = Progress(6, 0, enabled=True)
    p.expect_startups(2)
    p.startup(STARTUP)  # always
    fake_clock.at(every / 2)
    p.tick()  # too soon
    fake_clock.at(every)
    p.tick()  # a long start-up still shows a line
    fake_clock.at(every + 1)
    p.start("torch cell 0")  # the worker's first cell: always
    fake_clock.at(every + 2)
    p.advance()
    p.start("torch cell 1")  # too soon
    p.advance()
    p.start("torch cell 2")  # too soon
    fake_clock.at(2 * every)
    p.tick()  # too soon (every - 1 s since the last line)
    fake_clock.at(2 * every + 1)
    p.tick()  # due: in the middle of interleaved blocks, which send nothing
    p.advance()
    p.end_launch()
    fake_clock.at(2 * every + 2)
    p.startup("jax: starting")  # always, however soon
    fake_clock.at(2 * every + 3)
    p.start("jax cell 0")  # always
    lines = _lines(capsys)
    assert [line.split("] ")[1].split(" (")[0] for line in lines] == [
        STARTUP, STARTUP, "torch cell 0", "torch cell 2", "jax: starting", "jax cell 0"]
    assert lines[1] == f"[0/6 cells, 0/2 start-ups] {STARTUP} (0:10 elapsed, estimating)"
    # 3 cells in 10 s of cells (11 s to 21 s): 10/3 s each for the 3 left.
    assert lines[-1] == ("[3/6 cells, 2/2 start-ups] jax cell 0 (0:23 elapsed, about 0:10 "
                         "left)")


def test_the_last_plain_line_says_how_far_the_run_got(fake_clock, capsys):
    p = Progress(2, 0, enabled=True)
    p.expect_startups(1)
    p.startup(STARTUP)
    _torch_cells(p, fake_clock, 5, 2)
    p.end_launch()
    p.close()
    assert _lines(capsys)[-1] == "[2/2 cells, 1/1 start-ups] done after 0:09"
    p = Progress(2, 0, enabled=True)
    p.startup(STARTUP)
    p.close()  # interrupted in its start-up
    assert _lines(capsys)[-1] == "[0/2 cells, 0/1 start-ups] stopped after 0:00"


def test_no_lines_when_disabled(fake_clock, capsys):
    p = Progress(3, 0, enabled=False)
    p.startup(STARTUP)
    p.start("torch cell 0")
    fake_clock.at(100)
    p.tick()
    p.note("a note")
    p.close()
    assert capsys.readouterr().err == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_counts_the_start_up_and_shows_only_its_own_estimate(fake_clock, monkeypatch):
    pytest.importorskip("tqdm")
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    p = Progress(12, 0, enabled=True)
    p.expect_startups(2)
    p.startup(STARTUP)
    assert (p.bar.n, p.bar.total, p.bar.desc) == (0, 14, STARTUP)
    assert p.bar.postfix == "0/12 cells, estimating"
    _torch_cells(p, fake_clock, 10, 3)
    assert (p.bar.n, p.bar.total) == (4, 14)  # 3 cells and a start-up
    assert p.bar.postfix == "3/12 cells, about 0:28 left"
    p.close()
    out = terminal.getvalue()
    assert STARTUP in out and "0/14 steps" in out and "about 0:28 left" in out
    assert "?" not in out and "it/s" not in out and "<" not in out  # no tqdm rate or estimate


# --------------------------------------------------------------------------------------------
# What the watcher counts, through real processes


def _cell(impl: str, n: int, kind: str = "timing") -> dict:
    return {"kind": kind, "impl": impl, "framework": impl.split("/")[0], "form": "sparse",
            "variant": "native", "n": n, "c": 10, "dtype": "float32", "scale": 1.0, "seed": 0,
            "pass": "forward", "device": "cpu", "probe": ""}


CELLS = [_cell("torch/native/sparse", 8), _cell("torch/compiled/sparse", 8),
         _cell("torch/native/sparse", 8, kind="agreement"), _cell("torch/native/sparse", 16)]


class Recording(Progress):
    def __init__(self):
        super().__init__(len(CELLS), 0, enabled=False)
        self.events: list[str] = []

    def startup(self, label: str) -> None:
        self.events.append(f"startup {label}")
        super().startup(label)

    def start(self, label: str) -> None:
        self.events.append("start")
        super().start(label)

    def advance(self) -> None:
        self.events.append("advance")
        super().advance()

    def end_launch(self) -> None:
        self.events.append("end")
        super().end_launch()


def _watch(tmp_path, script, twice) -> Recording:
    env = dict(os.environ) | {"PYTHONPATH": os.pathsep.join(
        [str(PLUGINS), str(REPO), os.environ.get("PYTHONPATH", "")])}
    launch = Launch("protocol_worker", {"script": script, "cells": CELLS}, [env], tmp_path,
                    "torch-1")
    recording = Recording()
    outcome = watch(launch, CELLS, recording, 30.0, 30.0, announced_twice=twice)
    assert outcome.ok
    return recording


def test_runner_knows_which_cells_are_announced_twice():
    assert interleaved_indices(CELLS) == {0, 1}
    assert interleaved_indices(CELLS[2:]) == set()


def test_interleaved_cells_are_counted_after_their_blocks(tmp_path):
    # The worker's order for CELLS: cells 0 and 1 set up, their blocks (no message), both
    # finished; then the agreement cell and the last one, announced once each.
    script = [["start", 0], ["start", 1], ["start", 0], ["start", 1], ["start", 2],
              ["start", 3], ["finished"]]
    events = _watch(tmp_path, script, interleaved_indices(CELLS)).events
    assert events == ["startup torch-1: starting", "start", "start",  # the set-ups
                      "start",  # the blocks are over: cell 0 is being finished
                      "advance", "start",  # cell 0 is finished, cell 1 is being finished
                      "advance", "start", "advance", "start", "advance", "end"]


def test_an_interleaved_cell_whose_set_up_failed_is_counted_at_the_end(tmp_path):
    script = [["start", 0], ["start", 1], ["start", 0], ["start", 2], ["start", 3],
              ["finished"]]  # cell 1 failed at its set-up: never announced again
    recording = _watch(tmp_path, script, {0, 1})
    assert recording.events.count("advance") == 4 and recording.done == 4
