"""A cell's repeats pooled into one figure, floors from the run's best ceilings, and ratios
taken block by block between implementations timed side by side."""

from __future__ import annotations

import pytest

import xent_impls
from xent_bench.analysis.run import (
    REPEAT_BLOCKS,
    add_speedup,
    block_medians,
    cell_table,
    median_interval,
    merge_repeats,
    paired_ratio,
    pool_repeats,
)
from xent_bench.harness.cells import make_cell, repeated
from xent_bench.harness.records import Record
from xent_impls import Case

MS = 1e-3
CASE = Case(64, 100, "float32")
COST = {"logits_bytes": 25600.0, "model_bytes": 25600.0, "model_exps": 6400.0}


def _record(impl_id, times, *, repeat=0, clean=None, blocks=None, **metrics):
    cell = repeated(make_cell("timing", xent_impls.get(impl_id), CASE, "forward", "cpu"), repeat)
    raw = {"times_s": times, "clean": clean if clean is not None else [True] * len(times)}
    if blocks is not None:
        raw["block"] = blocks
    median = sorted(t for t, c in zip(times, raw["clean"]) if c)[len(times) // 2 - 1]
    return Record(run_id="r", cell=cell, status="ok", raw=raw,
                  metrics=COST | {"median_s": median, "first_call_s": 0.5 - repeat * 0.4,
                                  "rounds": float(len(times))} | metrics)


def test_repeats_pool_their_clean_rounds_and_keep_their_spread():
    first = _record("torch/native/sparse", [1 * MS] * 4 + [9 * MS], clean=[True] * 4 + [False],
                    peak_extra_bytes=100.0, loss_err_eps=1.0)
    second = _record("torch/native/sparse", [2 * MS] * 5, repeat=1, peak_extra_bytes=300.0,
                     loss_err_eps=3.0)
    pooled = pool_repeats([second, first], min_rounds=5)
    m = pooled.metrics
    assert "repeat" not in pooled.cell
    assert (m["rounds"], m["clean_rounds"], m["contaminated_rounds"]) == (10, 9, 1)
    assert m["median_s"] == pytest.approx(2 * MS)  # of 1,1,1,1,2,2,2,2,2 ms
    assert (m["repeat_lo_s"], m["repeat_hi_s"]) == (pytest.approx(1 * MS), pytest.approx(2 * MS))
    assert m["first_call_s"] == 0.5  # from the first repeat: later ones find caches warm
    assert m["loss_err_eps"] == 3.0  # the worst agreement of any repeat
    assert m["peak_extra_bytes"] == 200.0  # the median of the repeats
    assert (m["repeats"], m["failed_repeats"], m["contended"]) == (2, 0, 0)
    assert pooled.raw["times_s"][-1] == 2 * MS and len(pooled.raw["clean"]) == 10


def test_a_repeat_measured_beside_other_work_makes_the_pooled_cell_contended():
    quiet = _record("torch/native/sparse", [1 * MS] * 5, neighbour_cpu=0.02)
    busy = _record("torch/native/sparse", [1.4 * MS] * 5, repeat=1, neighbour_cpu=1.0)
    pooled = pool_repeats([quiet, busy], min_rounds=5).metrics
    assert pooled["clean_rounds"] == 10 and pooled["contended"] == 1.0
    assert pooled["neighbour_cpu"] == 1.0  # the busiest repeat's
    calm = pool_repeats([quiet, _record("torch/native/sparse", [1 * MS] * 5, repeat=1,
                                        neighbour_cpu=0.05)], min_rounds=5).metrics
    assert calm["contended"] == 0.0


def test_a_repeat_that_failed_leaves_the_others_standing():
    ok = _record("torch/native/sparse", [1 * MS] * 5)
    failed = Record(run_id="r", cell=repeated(ok.cell, 1), status="error", error="worker died")
    pooled = pool_repeats([ok, failed], min_rounds=5)
    assert pooled.status == "ok" and pooled.metrics["failed_repeats"] == 1


def test_floors_come_from_the_runs_best_ceilings():
    records = [_record("torch/native/sparse", [1 * MS] * 5),
               _record("torch/native/sparse", [1 * MS] * 5, repeat=1)]
    meta = {"min_rounds": 5, "ceilings": {"best": {"read_GBps": 25.6, "copy_GBps": 10.0,
                                                   "exp_Gps": 64.0}}}
    merged, = merge_repeats(records, meta)
    # 25600 bytes at 25.6 GB/s: 1 us; 6400 exps at 64 G/s: 0.1 us -> memory binds, 1 us of 1 ms
    assert merged.metrics["floor_s"] == pytest.approx(1e-6)
    assert merged.metrics["pct_of_limit"] == pytest.approx(0.1)
    assert merged.metrics["floor_bound"] == 0.0


def test_block_medians_use_clean_rounds_per_block():
    rec = _record("torch/native/sparse", [1 * MS, 3 * MS, 2 * MS, 8 * MS, 2 * MS],
                  clean=[True, True, True, False, True], blocks=[0, 0, 1, 1, 2])
    assert block_medians(rec) == {0: pytest.approx(2 * MS), 1: 2 * MS, 2: 2 * MS}
    alone = _record("torch/native/sparse", [1 * MS] * 5)
    assert block_medians(alone) is None


@pytest.mark.parametrize("n, ranks", [(2, (1, 2)), (5, (1, 5)), (6, (1, 6)), (10, (2, 9)),
                                       (25, (8, 18)), (100, (40, 61))])
def test_the_median_interval_is_the_binomial_order_statistics(n, ranks):
    """The 95% distribution-free interval for a median: ranks from the binomial tables."""
    values = [float(v) for v in range(n, 0, -1)]  # any order
    assert median_interval(values) == (float(ranks[0]), float(ranks[1]))


def test_paired_ratio_is_the_median_of_block_ratios_with_their_interval():
    many = {b: 2.0 + 0.01 * b for b in range(25)}
    ratio, lo, hi = paired_ratio(many, {b: 1.0 for b in range(25)})
    assert ratio == pytest.approx(2.12) and (lo, hi) == (pytest.approx(2.07), pytest.approx(2.17))
    assert paired_ratio({0: 2.0, 1: 4.0, 2: 3.0}, {0: 1.0, 1: 2.0, 2: 1.0}) == (2.0, 2.0, 3.0)
    assert paired_ratio({0: 2.0}, {0: 1.0}) is None  # one block: no interval
    assert paired_ratio({0: 2.0, 1: 2.0}, {2: 1.0, 3: 1.0}) is None  # never side by side


def test_speedup_vs_native_is_paired_when_both_were_interleaved():
    blocks = [0, 0, 1, 1, 2, 2]
    native = _record("torch/native/sparse", [2 * MS, 2 * MS, 4 * MS, 4 * MS, 2 * MS, 2 * MS],
                     blocks=blocks)
    manual = _record("torch/manual/sparse", [1 * MS, 1 * MS, 2 * MS, 2 * MS, 2 * MS, 2 * MS],
                     blocks=blocks)
    records = [native, manual]
    cells = cell_table(records)
    cells["blocks"] = [block_medians(r) for r in records]
    cells["status"] = "ok"
    out = add_speedup(cells).set_index("impl")
    row = out.loc["torch/manual/sparse"]
    assert row["speedup_paired"] == 1.0
    assert row["speedup_vs_native"] == pytest.approx(2.0)  # block ratios 2, 2, 1
    assert (row["speedup_lo"], row["speedup_hi"]) == (pytest.approx(1.0), pytest.approx(2.0))


def test_repeat_blocks_stay_apart():
    first = _record("torch/native/sparse", [1 * MS] * 5, blocks=[0, 1, 2, 3, 4])
    second = _record("torch/native/sparse", [1 * MS] * 5, repeat=1, blocks=[0, 1, 2, 3, 4])
    pooled = pool_repeats([first, second], min_rounds=5)
    assert pooled.raw["block"] == [0, 1, 2, 3, 4] + [REPEAT_BLOCKS + b for b in range(5)]
