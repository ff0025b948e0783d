"""Pinning a worker to the idlest CPUs (thread rule tests are in test_measurement.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xent_bench.harness import threads
from xent_bench.harness.launch import Launch


class FakeStat:
    """``/proc/stat`` whose per-CPU idle ticks grow by ``idle_per_read[cpu]`` at each read."""

    def __init__(self, idle_per_read: dict[int, int]):
        self.idle_per_read = idle_per_read
        self.reads = 0

    def read_text(self) -> str:
        self.reads += 1
        lines = ["cpu  1 2 3 4 5 6 7 8"]
        for cpu, step in self.idle_per_read.items():
            idle = step * self.reads
            lines.append(f"cpu{cpu} 10 0 10 {idle} 1 0 0 0")
        return "\n".join(lines + ["intr 5", "ctxt 9"]) + "\n"


def test_pick_cpus_takes_the_idlest():
    stat = FakeStat({0: 5, 1: 90, 2: 40, 3: 95})
    assert threads.pick_cpus(1, stat=stat, sample_s=0, allowed={0, 1, 2, 3}) == [3]
    assert threads.pick_cpus(2, stat=FakeStat({0: 5, 1: 90, 2: 40, 3: 95}), sample_s=0,
                             allowed={0, 1, 2, 3}) == [1, 3]


def test_pick_cpus_stays_inside_the_allowed_cpus_and_breaks_ties_upwards():
    stat = FakeStat({0: 50, 1: 50, 2: 99})
    assert threads.pick_cpus(1, stat=stat, sample_s=0, allowed={0, 1}) == [1]


def test_no_pinning_when_the_threads_fill_the_machine():
    assert threads.pick_cpus(2, stat=FakeStat({0: 1, 1: 1}), sample_s=0, allowed={0, 1}) is None
    assert threads.pick_cpus(4, stat=FakeStat({0: 1}), sample_s=0, allowed={0}) is None


def test_pick_cpus_without_a_stat_file_still_pins(tmp_path):
    missing = tmp_path / "stat"
    assert threads.pick_cpus(1, stat=missing, sample_s=0, allowed={0, 1}) == [1]


def test_pin_rule_says_what_it_does():
    assert threads.pin_rule(1, cores=2).startswith("each worker pinned to 1 of 2 CPUs")
    assert threads.pin_rule(2, cores=2) == "not pinned"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two CPUs")
def test_a_launch_pins_its_process_and_the_threads_it_starts(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    script = tmp_path / "affinity.py"
    script.write_text(
        "import os, sys, threading\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))\n"
        "t.start(); t.join()\n"
        "print(sorted(os.sched_getaffinity(0)), seen[0], flush=True)\n")
    launch = Launch("affinity", {}, [dict(os.environ, PYTHONPATH=str(tmp_path))], tmp_path,
                    "pin", cpus=[cpu])
    while launch.lines.get(timeout=60)[1] is not None:  # to the end of its protocol channel
        pass
    launch.finish()  # the child's output is in the log
    assert f"[{cpu}] [{cpu}]" in (tmp_path / "workers.log").read_text()
    unpinned = subprocess.run([sys.executable, "-c",
                               "import os; print(len(os.sched_getaffinity(0)))"],
                              capture_output=True, text=True, check=True)
    assert int(unpinned.stdout) == len(os.sched_getaffinity(0))
