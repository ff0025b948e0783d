"""The measurement plan: interleaved blocks inside a worker, ceilings chosen as the best of their
methods and repeats, and the thread rule."""

from __future__ import annotations

import time

import pytest

import xent_impls
from xent_bench.harness import floor, protocol, runner, worker
from xent_bench.harness.cells import make_cell, repeated
from xent_bench.harness.threads import default_threads
from xent_bench.harness.timing import perf_counter_rounds
from xent_impls import Case

CASE = Case(16, 10, "float32")


def _cells(*impl_ids, pass_="forward"):
    return [make_cell("timing", xent_impls.get(i), CASE, pass_, "cpu") for i in impl_ids]


def test_cells_of_one_case_are_grouped_in_order_of_first_appearance():
    a, b = _cells("numpy/reference/sparse", "numpy/reference/onehot")
    c, = _cells("numpy/reference/sparse", pass_="forward_backward")
    groups = worker.case_groups([a, c, b])
    assert [[i for i, _ in g] for g in groups] == [[0, 2], [1]]


def test_interleaved_blocks_alternate_the_implementations(capsys, monkeypatch):
    monkeypatch.setattr(worker, "block_count", lambda rounds: 3)
    calls = []  # the step timed by each block, in order

    def recording_rounds(call_once, rounds, probe=None):
        calls.append(call_once)
        return perf_counter_rounds(call_once, rounds, probe)

    monkeypatch.setattr(worker, "perf_counter_rounds", recording_rounds)
    cells = _cells("numpy/reference/sparse", "numpy/reference/onehot")
    task = {"run_id": "r", "budget_s": 0.001, "min_rounds": 3, "max_rounds": 6}
    done = worker.measure_interleaved(list(enumerate(cells)), task, env={})
    starts = [m.index for m in map(protocol.parse, capsys.readouterr().out.splitlines())
              if m is not None and m.kind == protocol.START]
    # Announced at set-up and again for the memory rounds and record, never inside the timed
    # blocks (a message wakes the runner beside the measurement).
    assert starts == [0, 1, 0, 1]
    # The blocks alternate: A B A B A B.
    a, b = calls[0], calls[1]
    assert a is not b and calls == [a, b, a, b, a, b]
    assert [i for i, _ in done] == [0, 1]
    for _, record in done:
        assert record.status == "ok", record.error
        blocks = record.raw["block"]
        assert sorted(set(blocks)) == [0, 1, 2] and blocks == sorted(blocks)
        assert len(blocks) == len(record.raw["times_s"]) == record.metrics["rounds"]
        assert "interleaved" in record.labels


@pytest.mark.parametrize("rounds, blocks", [
    ([50, 50, 40], 20),  # two rounds a turn for the cell with the fewest
    ([6, 300], 5),  # never fewer than MIN_BLOCKS
    ([300, 500], 50),  # never more than MAX_BLOCKS
    ([], 5),
])
def test_block_count_gives_the_fewest_rounds_two_a_turn(rounds, blocks):
    assert worker.block_count(rounds) == blocks


def test_a_cell_that_fails_to_set_up_is_an_error_and_the_others_go_on(monkeypatch):
    monkeypatch.setattr(worker, "block_count", lambda rounds: 2)
    cells = _cells("numpy/reference/sparse", "numpy/reference/onehot")
    real = worker.TimedCell

    def fragile(impl, cell, task):
        if impl.form == "onehot":
            raise MemoryError("no room for the one-hot targets")
        return real(impl, cell, task)

    monkeypatch.setattr(worker, "TimedCell", fragile)
    task = {"run_id": "r", "budget_s": 0.001, "min_rounds": 2, "max_rounds": 4}
    done = dict(worker.measure_interleaved(list(enumerate(cells)), task, env={}))
    assert done[0].status == "ok" and done[1].status == "oom"
    assert "no room" in done[1].error and done[1].metrics["model_bytes"] > 0


class FakeBackend:
    """Ops that take known times: exp over a cache-resident block at 1 G/s (cached), fused
    log-sum-exp at 2 G/s, the framework's cross-entropy at 4 G/s, DRAM-sized ops fast."""

    SYNC_METHOD = "none"

    @staticmethod
    def sync(out):
        return None

    @staticmethod
    def _takes(seconds):
        def op():
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        return op

    def ceiling_ops(self, device, numel):
        if numel == floor.CACHED_NUMEL:
            return {"exp": self._takes(numel / 1e9)}
        return {"copy": self._takes(1e-4), "read": self._takes(1e-4), "exp": self._takes(1e-3)}

    def exp_ceiling_ops(self, device, rows, cols):
        return {"logsumexp": self._takes(rows * cols / 2e9),
                "cross_entropy": self._takes(rows * cols / 4e9)}


def test_the_exp_ceiling_is_the_fastest_method(monkeypatch):
    monkeypatch.setattr(floor, "CACHED_REPEATS", 2)
    monkeypatch.setattr(floor, "CACHED_PASSES", 1)
    monkeypatch.setattr(floor, "CEILING_NUMEL", {"cpu": 2**20, "cuda": 2**20})
    out = floor.measure_ceilings(FakeBackend(), "cpu", budget_s=0.01)
    assert out["exp_method"] == "cross_entropy_4096"
    assert out["exp_Gps"] == pytest.approx(4.0, rel=0.3)
    assert out["exp_cached_Gps"] == pytest.approx(1.0, rel=0.3)
    assert out["exp_Gps"] == max(v for k, v in out.items() if k.startswith("exp_") and
                                 k.endswith("_Gps"))


def test_ceilings_keep_the_best_of_every_framework_and_repeat():
    meta = {}
    runner.record_ceilings(meta, 0, {"torch": {"copy_GBps": 10.0, "read_GBps": 20.0,
                                               "exp_Gps": 1.0, "exp_method": "cached"}})
    runner.record_ceilings(meta, 0, {"numpy": {"copy_GBps": 25.0, "read_GBps": 12.0,
                                               "exp_Gps": 0.5, "exp_method": "cached"}})
    runner.record_ceilings(meta, 1, {"torch": {"copy_GBps": 12.0, "read_GBps": 18.0,
                                               "exp_Gps": 3.0, "exp_method": "cross_entropy"}})
    best = meta["ceilings"]["best"]
    assert (best["copy_GBps"], best["copy_GBps_by"]) == (25.0, "numpy")
    assert (best["read_GBps"], best["exp_Gps"]) == (20.0, 3.0)
    assert best["exp_Gps_by"] == "torch (cross_entropy)"
    assert meta["ceilings"]["per_framework"]["torch"]["copy_GBps"] == 12.0
    assert [sorted(r) for r in meta["ceilings"]["repeats"]] == [["numpy", "torch"], ["torch"]]
    assert runner.ceilings_of_repeat(meta, 1) == meta["ceilings"]["repeats"][1]
    assert runner.ceilings_of_repeat(meta, 5) == {}


def test_repeats_of_a_cell_have_their_own_key_and_the_first_keeps_the_old_one():
    cell, = _cells("numpy/reference/sparse")
    assert repeated(cell, 0) is cell
    assert repeated(cell, 2)["repeat"] == 2
    from xent_bench.harness.cells import cell_key

    assert len({cell_key(repeated(cell, r)) for r in range(3)}) == 3


@pytest.mark.parametrize("cores, load, threads", [
    (1, 0.0, 1), (2, 0.0, 1), (2, 3.5, 1), (8, 0.2, 7), (8, 0.0, 8), (8, 12.0, 1), (16, 3.0, 13),
])
def test_thread_rule(cores, load, threads):
    chosen, rule = default_threads(cores, load)
    assert chosen == threads and str(cores) in rule
