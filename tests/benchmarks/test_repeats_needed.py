"""benchmarks/repeats_needed.py on run folders with known repeats."""

from __future__ import annotations

import runpy
from pathlib import Path

import xent_impls
from xent_bench.harness.cells import make_cell, repeated
from xent_bench.harness.records import Record, append_record
from xent_impls import Case

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "repeats_needed.py"
MS = 1e-3


def _main():
    return runpy.run_path(str(SCRIPT))["main"]


def _run(tmp_path: Path, medians_per_repeat: dict[str, list[float]]) -> Path:
    for impl_id, medians in medians_per_repeat.items():
        base = make_cell("timing", xent_impls.get(impl_id), Case(64, 100, "float32"), "forward",
                         "cpu")
        for repeat, median in enumerate(medians):
            append_record(tmp_path, Record(run_id="r", cell=repeated(base, repeat), status="ok",
                                           metrics={"median_s": median},
                                           raw={"times_s": [median] * 5, "clean": [True] * 5}))
    return tmp_path


def test_the_share_of_agreeing_cells_per_k(tmp_path, capsys):
    run = _run(tmp_path, {"torch/native/sparse": [1 * MS] * 4,  # always agrees
                          "torch/native/onehot": [1 * MS, 2 * MS, 1 * MS, 2 * MS]})
    assert _main()([str(run)]) == 0
    out = capsys.readouterr().out
    assert "2 cells, 4 repeats" in out
    rows = [line for line in out.splitlines() if line.startswith("| 1 ") or
            line.startswith("| 2 ")]
    # k = 1: the sparse cell always agrees; the one-hot cell when both repeats drawn have the
    # same speed, 2 of the 6 pairs: (1 + 1/3) / 2 = 67% of cells on average.
    k1 = float(rows[0].split("|")[2].strip("% "))
    assert 57 <= k1 <= 77
    assert rows[1].startswith("| 2 |")


def test_one_repeat_is_not_enough(tmp_path, capsys):
    run = _run(tmp_path, {"torch/native/sparse": [1 * MS]})
    assert _main()([str(run)]) == 2
    assert "at least 2 are needed" in capsys.readouterr().err


def test_the_share_of_agreeing_speedups_vs_native_per_k(tmp_path, capsys):
    """torch/manual runs at the native op's speed in repeats 0 and 2 and 1.5x slower in 1 and
    3 (four blocks each): with k = 1 the speedups of two repeats drawn agree for 4 of the 12
    ordered pairs."""
    case = Case(64, 100, "float32")
    for impl_id, per_repeat in {"torch/native/sparse": [1.0, 1.0, 1.0, 1.0],
                                "torch/manual/sparse": [1.0, 1.5, 1.0, 1.5]}.items():
        base = make_cell("timing", xent_impls.get(impl_id), case, "forward", "cpu")
        for repeat, factor in enumerate(per_repeat):
            times = [factor * MS] * 8
            append_record(tmp_path, Record(run_id="r", cell=repeated(base, repeat), status="ok",
                                           metrics={"median_s": factor * MS},
                                           raw={"times_s": times, "clean": [True] * 8,
                                                "block": [0, 0, 1, 1, 2, 2, 3, 3]}))
    assert _main()([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "speedups vs native within 5% (1)" in out
    (k1,) = [line for line in out.splitlines() if line.startswith("| 1 ")]
    share = float(k1.split("|")[3].strip("% "))
    assert 23 <= share <= 43
