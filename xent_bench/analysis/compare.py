"""Comparing runs: the cells of two (or more) runs matched and judged.

Cells are matched by ``cells.cell_key`` (implementation, case, pass, device, kind), so two runs
of the same grid on different commits or machines line up; a cell present in only one run is
listed, never dropped. The rules (thresholds, the bootstrap interval of a speed ratio, the
drift allowance and how it was calibrated, the memory and accuracy verdicts) are in
``xent_bench.analysis.compare_stats``; the rendering is in ``xent_bench.reports.compare_report``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from pathlib import Path

import numpy as np
import pandas as pd

from xent_bench.analysis.compare_stats import (
    REGRESSION,
    Options,
    accuracy_verdict,
    is_missing,
    memory_verdict,
    ratio_interval,
    speed_verdict,
)
from xent_bench.analysis.run import Run, figure_times, load_run
from xent_bench.harness.cells import CELL_KEYS, cell_key

# The default thresholds (``compare_stats``), for calls that give none.
DEFAULT_OPTIONS = Options()

# --------------------------------------------------------------------------------------------
# Cells of a run


def row_key(row: dict) -> str:
    """``cells.cell_key`` of a row of a cell table (missing keys, e.g. a column added after the
    run was recorded, count as unset)."""
    return cell_key({k: (None if is_missing(row.get(k)) else row.get(k)) for k in CELL_KEYS})


def keyed_cells(run: Run) -> pd.DataFrame:
    """The run's cell table (``run.prepare_cells``) indexed by cell key, with the round times its
    figures come from in a ``times`` column (``run.figure_times``: the clean rounds; the last
    record of a key wins)."""
    times = {rec.key: figure_times(rec) for rec in run.records}
    cells = run.cells.copy()
    cells["key"] = [row_key(r) for r in cells.to_dict("records")]
    cells = cells.drop_duplicates("key", keep="last").set_index("key", drop=False)
    cells["times"] = [times.get(k, []) for k in cells.index]
    return cells


# --------------------------------------------------------------------------------------------
# Comparing two runs

SIDE_COLUMNS = ("status", "state", "median_s", "iqr_rel", "rounds", "pct_of_limit",
                "peak_extra_bytes", "loss_err_eps", "grad_err_eps")


@dataclasses.dataclass
class Comparison:
    """Two runs side by side: ``table`` has one row per cell present in both (the cell keys,
    ``base_*`` / ``new_*`` columns, ``ratio``, ``lo``, ``hi`` and the three verdicts);
    ``only_base`` / ``only_new`` list the cells present in one run only."""

    base: Run
    new: Run
    options: Options
    table: pd.DataFrame
    only_base: pd.DataFrame
    only_new: pd.DataFrame

    def regressions(self, fail_on=tuple(REGRESSION)) -> pd.DataFrame:
        """Rows of ``table`` that regressed in any of the ``fail_on`` categories."""
        return regressions(self.table, fail_on)

    def counts(self, column: str) -> dict[str, int]:
        """How many cells got each verdict in ``column`` (speed, memory or accuracy)."""
        if self.table.empty:
            return {}
        return {k: int(v) for k, v in self.table[column].value_counts().items()}


def compare_cells(base: pd.DataFrame, new: pd.DataFrame, options: Options = DEFAULT_OPTIONS
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(table, only_base, only_new)`` from two keyed cell tables (:func:`keyed_cells`)."""
    common = [k for k in new.index if k in base.index]
    rows = [compare_cell(base.loc[k].to_dict(), new.loc[k].to_dict(), options) for k in common]
    key_columns = [c for c in CELL_KEYS if c in new.columns]
    table = judge_speed(pd.DataFrame(rows, columns=[*key_columns, *_compared_columns()]),
                        options)
    only_base = base.loc[[k for k in base.index if k not in new.index], [*key_columns, "status"]]
    only_new = new.loc[[k for k in new.index if k not in base.index], [*key_columns, "status"]]
    return table, only_base.reset_index(drop=True), only_new.reset_index(drop=True)


def _compared_columns() -> list[str]:
    sides = [f"{side}_{c}" for c in SIDE_COLUMNS for side in ("base", "new")]
    return [*sides, "ratio", "lo", "hi", "shift", "shift_group", "shift_cells", "shift_used",
            "rel_ratio", "rel_lo", "rel_hi", "speed", "memory_ratio", "memory", "accuracy",
            "accuracy_note"]


def compare_cell(base: dict, new: dict, options: Options = DEFAULT_OPTIONS) -> dict:
    """One row of the comparison table from one cell's row in each run."""
    row = {k: new.get(k) for k in CELL_KEYS if k in new}
    for c in SIDE_COLUMNS:
        row[f"base_{c}"], row[f"new_{c}"] = base.get(c), new.get(c)
    ratio, lo, hi = ratio_interval(base.get("times") or [], new.get("times") or [],
                                   confidence=options.confidence, resamples=options.resamples,
                                   seed=options.seed)
    row |= {"ratio": ratio, "lo": lo, "hi": hi}
    b_peak, n_peak = base.get("peak_extra_bytes"), new.get("peak_extra_bytes")
    row["memory_ratio"] = (n_peak / b_peak if not (is_missing(b_peak) or is_missing(n_peak))
                           and b_peak > 0 else math.nan)
    row["memory"] = memory_verdict(b_peak, n_peak, options.memory_threshold,
                                   options.memory_floor_bytes)
    row["accuracy"], row["accuracy_note"] = accuracy_verdict(base, new)
    return row


# --------------------------------------------------------------------------------------------
# The common shift of cells measured side by side
#
# On a shared machine the speed of the whole machine changes between runs (neighbours on the
# host, not seen inside the VM): on this project's 2-core VM every cell of a worker moved
# together by 0.70x-1.07x, group by group, between two quiet runs a minute apart, and 18 of 20
# cells agreed within 10% once that was taken out (docs/method.md, "Known limits"). A
# run-to-run ratio mixes that shift with the change under test. Cells measured side by side
# (one worker process, interleaved blocks) share the shift, so the median ratio of such a
# group estimates it, and each cell is judged on its ratio over the
# shift: a 1.5x slowdown of one implementation stands out of a machine that got 1.3x faster.
#
# The groups, narrowest first: one interleaved case (framework, size, dtype, pass), the
# framework's cells of one pass, the framework's cells. A cell takes the narrowest group with at
# least MIN_SHIFT_CELLS timed cells in both runs. The shift is taken out only when the group
# moved together: at least SHIFT_MAJORITY of its cells within the band of the group's median
# (so a change to half the implementations is judged on raw ratios, not hidden as a shift). A
# change common to every cell of a group (a new framework version) cannot be told from the
# machine by these runs: the shift is reported, and --shift none judges the raw ratios.
SHIFT_GROUPS = (("framework", "n", "c", "dtype", "pass", "device"),
                ("framework", "pass", "device"),
                ("framework", "device"))
MIN_SHIFT_CELLS = 3
SHIFT_MAJORITY = 2 / 3


def _group_label(level: tuple[str, ...], values: tuple) -> str:
    named = dict(zip(level, values))
    parts = [str(named["framework"])]
    if "n" in named:
        parts.append(f"{named['n']}x{named['c']} {named['dtype']}")
    if "pass" in named:
        parts.append(str(named["pass"]))
    return " ".join(parts)


def _no_shifts(index: pd.Index) -> pd.DataFrame:
    """The shift columns of rows with no shift taken out."""
    return pd.DataFrame({"shift": 1.0, "shift_group": "", "shift_cells": 0.0,
                         "shift_used": 0.0}, index=index)


def common_shifts(table: pd.DataFrame, band: float) -> pd.DataFrame:
    """For each row of a comparison table: ``shift_group`` (the group its shift comes from,
    "" for none), ``shift_cells`` (the group's cells), ``shift`` (the group's median ratio, 1.0
    for none) and ``shift_used`` (1.0 when the group moved together and the shift is taken out,
    0.0 when not). See the comment above for the groups and the rule."""
    out = _no_shifts(table.index)
    timed = table["ratio"].notna() & (table["ratio"] > 0)
    if not timed.any():
        return out
    pending = timed.copy()
    for level in SHIFT_GROUPS:
        if not all(c in table.columns for c in level):
            continue
        for values, group in table[timed].groupby(list(level), dropna=False, sort=False):
            members = group.index[pending.loc[group.index]]
            if len(group) < MIN_SHIFT_CELLS or members.empty:
                continue
            ratios = group["ratio"].to_numpy(dtype=float)
            shift = float(np.median(ratios))
            moved_together = np.mean(np.maximum(ratios / shift, shift / ratios) <= band)
            out.loc[members, "shift"] = shift
            out.loc[members, "shift_group"] = _group_label(level, values)
            out.loc[members, "shift_cells"] = float(len(group))
            out.loc[members, "shift_used"] = float(moved_together >= SHIFT_MAJORITY)
            pending.loc[members] = False
    return out


def judge_speed(table: pd.DataFrame, options: Options = DEFAULT_OPTIONS) -> pd.DataFrame:
    """The comparison table with its common shifts (:func:`common_shifts`), the ratio judged
    (``rel_ratio``, ``rel_lo``, ``rel_hi``: over the shift where it is taken out, else the raw
    ratio) and the speed verdict of each cell (``compare_stats.speed_verdict``)."""
    table = table.copy()
    shifts = (common_shifts(table, options.slower_above) if options.shift == "group"
              else _no_shifts(table.index))
    for column in shifts.columns:
        table[column] = shifts[column]
    divisor = table["shift"].where(table["shift_used"] == 1.0, 1.0)
    for raw, rel in (("ratio", "rel_ratio"), ("lo", "rel_lo"), ("hi", "rel_hi")):
        table[rel] = pd.to_numeric(table[raw], errors="coerce") / divisor
    table["speed"] = ["n/a" if is_missing(r) else
                      speed_verdict(lo, hi, options.threshold, options.drift)
                      for r, lo, hi in zip(table["rel_ratio"], table["rel_lo"], table["rel_hi"])]
    return table


def shift_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per shift group of a comparison table: its cells, median ratio and whether the
    shift was taken out (``shift_used``)."""
    grouped = table[table["shift_group"] != ""]
    if grouped.empty:
        return pd.DataFrame(columns=["shift_group", "shift_cells", "shift", "shift_used"])
    return (grouped.drop_duplicates("shift_group")[["shift_group", "shift_cells", "shift",
                                                    "shift_used"]].reset_index(drop=True))


def check_comparable(base: Run, new: Run) -> None:
    """Raise ``ValueError`` when the two runs measure different things (timing against
    agreement)."""
    if base.kind and new.kind and base.kind != new.kind:
        raise ValueError(f"cannot compare a {base.kind} run ({base.meta.get('run_id')}) with a "
                         f"{new.kind} run ({new.meta.get('run_id')})")


def compare_runs(base_dir: Path, new_dir: Path, options: Options = DEFAULT_OPTIONS) -> Comparison:
    """Load two run folders and compare every cell they share."""
    base, new = load_run(Path(base_dir)), load_run(Path(new_dir))
    check_comparable(base, new)
    table, only_base, only_new = compare_cells(keyed_cells(base), keyed_cells(new), options)
    return Comparison(base, new, options, table, only_base, only_new)


def regressions(table: pd.DataFrame, fail_on=tuple(REGRESSION)) -> pd.DataFrame:
    """Rows of a comparison table that regressed in any of the ``fail_on`` categories."""
    if table.empty or not fail_on:
        return table.iloc[0:0]
    hit = np.zeros(len(table), dtype=bool)
    for name in fail_on:
        column, verdict = REGRESSION[name]
        hit |= (table[column] == verdict).to_numpy()
    return table[hit]


# --------------------------------------------------------------------------------------------
# Several runs: merge and history


def run_labels(count: int) -> list[str]:
    """Short column labels for ``count`` runs: A, B, ..., Z, AA, AB, ..."""
    labels = []
    for i in range(count):
        label, j = "", i
        while True:
            label = chr(ord("A") + j % 26) + label
            j = j // 26 - 1
            if j < 0:
                break
        labels.append(label)
    return labels


def side_by_side(runs: list[Run], labels: list[str], metrics=("median_s", "pct_of_limit"),
                 ) -> pd.DataFrame:
    """One row per cell of any run (in first-seen order), the cell keys, then ``{metric}@{label}``
    and ``state@{label}`` for every run (NaN / missing where the run lacks the cell)."""
    frames = {label: keyed_cells(run) for run, label in zip(runs, labels)}
    order = list(dict.fromkeys(k for f in frames.values() for k in f.index))
    first = {}
    for f in frames.values():
        for k in f.index:
            first.setdefault(k, f.loc[k])
    key_columns = [c for c in CELL_KEYS if any(c in f.columns for f in frames.values())]
    rows = []
    for k in order:
        row = {c: first[k].get(c) for c in key_columns}
        for label, f in frames.items():
            present = k in f.index
            for m in metrics:
                row[f"{m}@{label}"] = f.at[k, m] if present and m in f.columns else math.nan
            row[f"state@{label}"] = f.at[k, "state"] if present else None
        rows.append(row)
    return pd.DataFrame(rows)


def select_cells(table: pd.DataFrame, impls=None, sizes=None, dtypes=None, passes=None
                 ) -> pd.DataFrame:
    """Rows whose implementation matches any glob in ``impls``, whose (n, c) is in ``sizes``,
    dtype in ``dtypes`` and pass in ``passes`` (each None: no filter)."""
    keep = np.ones(len(table), dtype=bool)
    if impls:
        keep &= np.array([any(fnmatch.fnmatchcase(i, p) for p in impls) for i in table["impl"]],
                         dtype=bool)
    if sizes:
        wanted = {(int(n), int(c)) for n, c in sizes}
        keep &= np.array([(int(n), int(c)) in wanted for n, c in zip(table["n"], table["c"])],
                         dtype=bool)
    if dtypes:
        keep &= table["dtype"].isin(dtypes).to_numpy()
    if passes:
        keep &= table["pass"].isin(passes).to_numpy()
    return table[keep].reset_index(drop=True)


def load_runs(folders) -> list[Run]:
    """Load run folders (``ValueError`` for a folder that is not a run folder)."""
    return [load_run(Path(f)) for f in folders]


def history_table(runs: list[Run], impls=None, sizes=None, dtypes=None, passes=None
                  ) -> pd.DataFrame:
    """The chosen cells of ``runs`` side by side (median, quartiles, % of limit per run);
    ``ValueError`` when no cell matches the selection."""
    table = side_by_side(runs, run_labels(len(runs)),
                         metrics=("median_s", "q1_s", "q3_s", "pct_of_limit"))
    if not table.empty:
        table = select_cells(table, impls, sizes, dtypes, passes)
    if table.empty:
        raise ValueError("no cell of these runs matches the selection (--impl, --size, --dtype, "
                         "--pass)")
    return table
