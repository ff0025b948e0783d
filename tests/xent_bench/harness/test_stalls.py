"""The stall detector on fake scheduler statistics, and the clean-round figures built on it."""

from __future__ import annotations

import dataclasses

import pytest

from xent_bench.harness import stalls, threads
from xent_bench.harness.stalls import RoundStats, StallProbe, is_contaminated, round_stats
from xent_bench.harness.timing import Timing, perf_counter_rounds

MS = 1e-3


def test_round_stats_sum_the_threads_and_count_new_ones_whole():
    before = {"1": (1_000_000, 0, 10), "2": (0, 500_000, 3)}
    after = {"1": (3_000_000, 200_000, 14), "2": (0, 500_000, 3), "3": (400_000, 100_000, 1)}
    stats = round_stats(before, after, elapsed_s=4 * MS)
    assert stats.wait_s == pytest.approx(300e-6)  # 0.2 ms (thread 1) + 0.1 ms (new thread 3)
    assert stats.cpu_s == pytest.approx(2.4e-3)
    assert stats.busy_threads == 1  # thread 1 ran 2 ms of 4; thread 3 only 0.4 ms
    assert stats.longest_wait_s == pytest.approx(100e-6)  # thread 3: 0.1 ms in one turn


def test_a_thread_that_ended_counts_nothing_and_counters_never_go_back():
    stats = round_stats({"1": (5, 5, 5), "9": (7, 7, 7)}, {"1": (4, 4, 4)}, elapsed_s=MS)
    assert stats == RoundStats(0.0, 0.0, 0, 0.0)


@pytest.mark.parametrize("wait_s, longest_s, elapsed_s, contaminated", [
    (0.0, 0.0, 0.1 * MS, False),
    # Threads of one framework handing work to each other: many short turns, however long.
    (1.0 * MS, 0.15 * MS, 0.6 * MS, False),
    # Another process's slice: one long wait.
    (0.8 * MS, 0.8 * MS, 1.2 * MS, True),
    (12 * MS, 12 * MS, 0.06 * MS, True),  # a stalled parallel region waits a tick
    (2 * MS, 2 * MS, 100 * MS, False),  # one slice in a long round: 2%
    (20 * MS, 2 * MS, 100 * MS, True),  # ten of them: 20%
])
def test_contamination_threshold(wait_s, longest_s, elapsed_s, contaminated):
    assert is_contaminated(RoundStats(wait_s, 0.0, 1, longest_s), elapsed_s) is contaminated


@pytest.mark.parametrize("cpu_s, contaminated", [
    # Pinned to one CPU, threads spinning and working in turn: long waits, but the process had
    # the whole round on its CPU.
    (1.0 * MS, False),
    (0.97 * MS, False),
    # Someone else had 0.3 ms of the CPU.
    (0.7 * MS, True),
])
def test_one_cpu_rounds_count_only_waits_the_process_did_not_fill(cpu_s, contaminated):
    stats = RoundStats(wait_s=0.8 * MS, cpu_s=cpu_s, busy_threads=2, longest_wait_s=0.8 * MS,
                       cpus=1)
    assert is_contaminated(stats, 1.0 * MS) is contaminated
    # The same round on two CPUs: the CPU time cannot tell, the wait rule alone decides.
    assert is_contaminated(dataclasses.replace(stats, cpus=2), 1.0 * MS) is True


def test_the_probe_knows_the_cpus_it_may_run_on():
    stats = StallProbe(lambda: {"1": (0, 0, 0)}, cpus=1).stats({}, {"1": (0, 0, 1)}, MS)
    assert stats.cpus == 1
    assert StallProbe(lambda: {"1": (0, 0, 0)}).cpus == threads.usable_cores()


class FakeSchedstat:
    """A process whose one thread waits ``waits[i]`` ns in round ``i`` (two reads a round)."""

    def __init__(self, waits_ns):
        self.waits = list(waits_ns)
        self.reads = 0
        self.wait = 0

    def __call__(self):
        self.reads += 1
        if self.reads > 1 and self.waits:  # the probe's availability check is read 1
            self.wait += self.waits.pop(0)
        return {"1": (0, self.wait, self.reads)}  # one turn on a CPU per reading


def test_contaminated_rounds_are_left_out_of_the_figure():
    waits = [0] + [0, 20_000_000, 0, 0, 20_000_000, 0, 0, 0]  # first: the loop's start reading
    probe = StallProbe(FakeSchedstat(waits))
    assert probe.available and probe.source == "schedstat"
    durations = iter([1.0, 9.0, 1.0, 1.0, 9.0, 1.0, 1.0, 1.0])
    rounds = perf_counter_rounds(lambda: None, 8, probe)
    rounds.times_s = [next(durations) * MS for _ in rounds.times_s]  # the stalled ones are slow
    timing = Timing(first_call_s=0.0, times_s=rounds.times_s, stats=rounds.stats, min_clean=5,
                    stall_source=probe.source)
    summary = timing.summary()
    assert timing.clean == [True, False, True, True, False, True, True, True]
    assert summary["median_s"] == pytest.approx(1 * MS)
    assert summary["q3_s"] == pytest.approx(1 * MS)
    assert (summary["rounds"], summary["clean_rounds"], summary["contaminated_rounds"]) == (8, 6, 2)
    assert summary["contended"] == 0.0
    assert summary["stall_wait_s"] == pytest.approx(40 * MS)


def test_too_few_clean_rounds_make_a_contended_cell():
    stalled = RoundStats(10 * MS, 0.0, 1, 10 * MS)
    timing = Timing(first_call_s=0.0, times_s=[11 * MS] * 4 + [1 * MS] * 2,
                    stats=[stalled] * 4 + [RoundStats(0.0, 0.0, 1)] * 2, min_clean=5)
    assert timing.contended and timing.summary()["contended"] == 1.0
    assert timing.median_s == pytest.approx(1 * MS)  # shown from its clean rounds, flagged


def test_without_a_source_every_round_counts_and_the_record_says_so(monkeypatch):
    probe = StallProbe(lambda: None)
    assert not probe.available and probe.source == "unavailable"
    rounds = perf_counter_rounds(lambda: None, 3, probe)
    assert rounds.stats == [None, None, None] and rounds.span is None
    timing = Timing(0.0, rounds.times_s, rounds.stats, stall_source=probe.source, min_clean=3)
    assert timing.clean == [True] * 3 and not timing.contended
    assert "stall_wait_s" not in timing.summary()


def test_the_real_source_reads_this_process():
    readings = stalls.read_schedstat()
    if readings is None:
        pytest.skip("no /proc/self/task/*/schedstat on this machine")
    assert all(min(fields) >= 0 and len(fields) == 3 for fields in readings.values())


# --- other work on the machine ----------------------------------------------------------------


def _meter(busy: list[float | None], own: list[float], clock: list[float], slack: float = 0.0):
    values = {"busy": iter(busy), "own": iter(own), "clock": iter(clock)}
    return stalls.NeighbourMeter(busy=lambda: next(values["busy"]),
                                 own=lambda: next(values["own"]),
                                 clock=lambda: next(values["clock"]), slack=slack)


def test_the_meter_counts_the_machines_busy_time_that_was_not_this_process():
    # Over 2 s the machine's CPUs were busy 3.1 s, 1.0 s of it this process: 1.05 CPUs of others.
    meter = _meter(busy=[100.0, 103.1], own=[5.0, 6.0], clock=[10.0, 12.0]).start()
    assert meter.stop() == pytest.approx(1.05)
    # Tick rounding can make the difference negative on a quiet machine: never below 0.
    assert _meter([100.0, 100.9], [5.0, 6.0], [0.0, 1.0]).start().stop() == 0.0
    # Without /proc/stat there is no figure.
    assert _meter([None, None], [0.0, 1.0], [0.0, 1.0]).start().stop() is None
    with pytest.raises(RuntimeError, match="before start"):
        _meter([], [], []).stop()


def test_the_meter_takes_out_what_tick_accounting_can_add_to_a_short_span(monkeypatch):
    # A 5 ms cell on a quiet 2-CPU machine: two 10 ms ticks fell in it, 4 ms of them this
    # process. Raw, that is 3.2 CPUs of other work; a tick per CPU is rounding, so 0.
    short = dict(busy=[100.0, 100.02], own=[5.0, 5.004], clock=[0.0, 0.005])
    assert _meter(**short).start().stop() == pytest.approx(3.2)
    assert _meter(**short, slack=0.02).start().stop() == 0.0
    # Over a 2 s cell the same slack costs 0.01 CPUs: a neighbour on one core still shows.
    assert _meter([100.0, 104.0], [5.0, 7.0], [0.0, 2.0], slack=0.02).start().stop() == \
        pytest.approx(0.99)
    monkeypatch.setattr(stalls.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(stalls.os, "sysconf", lambda name: 100)
    assert stalls.tick_slack() == pytest.approx(0.02)
    assert stalls.NeighbourMeter(busy=lambda: 0.0).slack == pytest.approx(0.02)


def test_busy_seconds_reads_the_busy_fields_of_the_cpu_line(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 20 30 9000 50 5 5 40 7 0\ncpu0 50 10 15 4500 25 2 2 20 3 0\n")
    monkeypatch.setattr(stalls.os, "sysconf", lambda name: 100)
    # 100 + 20 + 30 + 5 + 5 + 40 ticks (idle, iowait and guest, already in user, are not)
    assert stalls.busy_seconds(stat) == pytest.approx(2.0)
    stat.write_text("garbage\n")
    assert stalls.busy_seconds(stat) is None
    assert stalls.busy_seconds(tmp_path / "missing") is None


@pytest.mark.parametrize(("neighbour_cpu", "contended"),
                         [(None, False), (0.03, False), (0.25, False), (0.9, True)])
def test_a_cell_measured_beside_other_work_is_contended_though_every_round_is_clean(
        neighbour_cpu, contended):
    clean = RoundStats(0.0, 1 * MS, 1)
    timing = Timing(first_call_s=0.0, times_s=[1 * MS] * 6, stats=[clean] * 6, min_clean=5,
                    neighbour_cpu=neighbour_cpu)
    assert timing.clean == [True] * 6
    assert timing.contended is contended
    summary = timing.summary()
    assert summary["contended"] == float(contended)
    assert summary.get("neighbour_cpu") == neighbour_cpu


def test_metered_rounds_carry_the_other_work_over_all_rounds(monkeypatch):
    from xent_bench.harness import timing as timing_mod

    values = iter([10.0, 10.5])  # the machine: 0.5 s busy over the rounds
    monkeypatch.setattr(timing_mod, "NeighbourMeter",
                        lambda: stalls.NeighbourMeter(busy=lambda: next(values),
                                                      own=lambda: 0.0,
                                                      clock=iter([0.0, 1.0]).__next__,
                                                      slack=0.0))
    rounds = timing_mod.metered_rounds(perf_counter_rounds, lambda: None, 3, None)
    assert len(rounds.times_s) == 3 and rounds.neighbour_cpu == pytest.approx(0.5)


def test_the_real_meter_reads_this_machine():
    if stalls.busy_seconds() is None:
        pytest.skip("no /proc/stat on this machine")
    meter = stalls.NeighbourMeter().start()
    sum(range(10**5))
    value = meter.stop()
    assert value is not None and value >= 0.0
