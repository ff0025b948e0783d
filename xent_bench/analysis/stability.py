"""Whether a machine's figures hold: reruns of one grid compared cell by cell.

``xent-bench stability`` measures one preset three times (quiet; one core kept busy by a
spinning process; quiet) and once more with one implementation slowed down on purpose, and
these functions turn the runs into the figures it prints:

- quiet reruns: the share of cells whose medians agree within ``RERUN_TOLERANCE``, as measured
  and with the machine's change of speed between the runs taken out (the common shift of the
  cells measured side by side, as ``compare`` judges them), and of speedups over the native op
  (a ratio measured inside each run) within ``RATIO_TOLERANCE``;
- the loaded run: cells off their quiet figure by more than ``LOADED_TOLERANCE`` that are not
  flagged ``contended`` (silently wrong cells: the target is none);
- cells above 100% of the limit in any run (a floor that is not a floor);
- peak memory: cells whose figure agrees across runs within ``MEMORY_TOLERANCE`` (or
  ``MEMORY_FLOOR_BYTES``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from xent_bench.analysis.run import Run

RERUN_TOLERANCE = 0.10
RATIO_TOLERANCE = 0.05
LOADED_TOLERANCE = 0.25
MEMORY_TOLERANCE = 0.05
MEMORY_FLOOR_BYTES = 2.0**20
KEYS = ["impl", "n", "c", "dtype", "pass", "device"]


def timed_cells(run: Run) -> pd.DataFrame:
    """The run's timing cells that measured (status ok), indexed by implementation and case."""
    cells = run.cells
    ok = cells[(cells["kind"] == "timing") & (cells["status"] == "ok")]
    return ok.drop_duplicates(KEYS, keep="last").set_index(KEYS)


def _paired(a: Run, b: Run, column: str) -> pd.DataFrame:
    left, right = timed_cells(a), timed_cells(b)
    both = left.index.intersection(right.index)
    return pd.DataFrame({"a": left.loc[both, column], "b": right.loc[both, column]})


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How many paired cells agree within a tolerance, and the worst disagreement."""

    agree: int
    total: int
    worst: float  # the largest ratio between the two figures (>= 1), NaN without pairs

    @property
    def share(self) -> float:
        return self.agree / self.total if self.total else float("nan")


def _agreement(pairs: pd.DataFrame, tolerance: float) -> Agreement:
    pairs = pairs.dropna()
    pairs = pairs[(pairs["a"] > 0) & (pairs["b"] > 0)]
    if pairs.empty:
        return Agreement(0, 0, float("nan"))
    ratio = np.maximum(pairs["a"] / pairs["b"], pairs["b"] / pairs["a"])
    return Agreement(int((ratio <= 1 + tolerance).sum()), len(pairs), float(ratio.max()))


def rerun_agreement(a: Run, b: Run, tolerance: float = RERUN_TOLERANCE) -> Agreement:
    """Cells whose median time agrees between two runs within ``tolerance``."""
    return _agreement(_paired(a, b, "median_s"), tolerance)


def shifted_agreement(table: pd.DataFrame, tolerance: float = RERUN_TOLERANCE) -> Agreement:
    """Cells of a comparison table (``compare.compare_runs(...).table``) whose ratio over the
    common shift of the cells measured beside them (``rel_ratio``: the machine's change of
    speed between the runs taken out) is within ``tolerance`` of 1."""
    ratios = pd.to_numeric(table["rel_ratio"], errors="coerce") if len(table) else pd.Series()
    return _agreement(pd.DataFrame({"a": 1.0, "b": ratios}), tolerance)


def ratio_agreement(a: Run, b: Run, tolerance: float = RATIO_TOLERANCE) -> Agreement:
    """Speedups over the framework's native op (other implementations only) that agree
    between two runs within ``tolerance``."""
    pairs = _paired(a, b, "speedup_vs_native")
    impls = pairs.index.get_level_values("impl")
    natives = set(timed_cells(a)["native_impl"].dropna())
    return _agreement(pairs[[i not in natives for i in impls]], tolerance)


@dataclasses.dataclass(frozen=True)
class LoadedCheck:
    total: int
    within: int  # within the tolerance of the quiet figure
    contended: int  # off by more, and flagged contended
    silent: list[str]  # off by more and not flagged: wrong without a word
    flagged: int = 0  # flagged contended, whether off or not


def loaded_check(quiet: Run, loaded: Run, tolerance: float = LOADED_TOLERANCE) -> LoadedCheck:
    """Each cell of the loaded run against the quiet run: within ``tolerance``, flagged
    ``contended``, or silently wrong."""
    q, ld = timed_cells(quiet), timed_cells(loaded)
    both = q.index.intersection(ld.index)
    within = contended = 0
    silent = []
    for key in both:
        ratio = ld.at[key, "median_s"] / q.at[key, "median_s"]
        if abs(ratio - 1) <= tolerance:
            within += 1
        elif ld.at[key, "contended"] == 1:
            contended += 1
        else:
            silent.append(f"{key[0]} {key[1]}x{key[2]} {key[3]} {key[4]}: {ratio:.2f}x")
    flagged = int(sum(ld.at[key, "contended"] == 1 for key in both))
    return LoadedCheck(len(both), within, contended, silent, flagged)


def over_limit(run: Run) -> list[str]:
    """Cells above 100% of the limit (each means a ceiling is wrong)."""
    cells = timed_cells(run)
    high = cells[cells["pct_of_limit"] > 100]
    return [f"{k[0]} {k[1]}x{k[2]} {k[3]} {k[4]}: {v:.0f}%"
            for k, v in high["pct_of_limit"].items()]


def memory_agreement(runs: list[Run], tolerance: float = MEMORY_TOLERANCE,
                     floor_bytes: float = MEMORY_FLOOR_BYTES) -> Agreement:
    """Cells whose peak extra memory agrees across every run, within ``tolerance`` of the
    smallest or ``floor_bytes``."""
    tables = [timed_cells(r)["peak_extra_bytes"] for r in runs]
    joined = pd.concat(tables, axis=1, join="inner").dropna()
    if joined.empty:
        return Agreement(0, 0, float("nan"))
    low, high = joined.min(axis=1), joined.max(axis=1)
    agree = (high - low <= np.maximum(tolerance * low, floor_bytes))
    worst = float((high / low.where(low > 0)).max()) if (low > 0).any() else float("nan")
    return Agreement(int(agree.sum()), len(joined), worst)
