"""A run folder as tables: the data every report, comparison and check is built from.

``load_run(run_dir)`` reads ``meta.json`` and ``records.jsonl`` into a ``Run``: the tidy long
table (one row per cell and metric), the wide cell table (one row per cell, with verdicts, each
cell's state and its speedup over the framework's native op) and the raw timed rounds.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from xent_bench.harness import agreement, floor
from xent_bench.harness.cells import CELL_KEYS, cell_key
from xent_bench.harness.records import Record, load_records
from xent_bench.harness.runner import read_meta
from xent_bench.harness.timing import Timing, is_neighboured
from xent_impls.registry import all_impls
from xent_impls.vocabulary import DTYPE_ORDER, FORMS, FRAMEWORKS, PASSES

SORT_KEYS = ["framework", "variant", "form", "c", "n", "dtype", "scale", "pass"]
CASE_KEYS = ["n", "c", "dtype", "scale", "seed", "pass", "device"]

# Metrics the report reads; a run that lacks one (errors only, an old record) gets NaN.
METRICS = ("median_s", "q1_s", "q3_s", "iqr_rel", "noisy", "rounds", "first_call_s", "compile_s",
           "logits_bytes", "model_bytes", "peak_extra_bytes", "retained_bytes", "floor_s",
           "floor_bound", "GBps", "pct_of_limit", "calls_per_s", "loss_err_eps", "grad_err_eps",
           "loss_nonfinite", "grad_nonfinite", "clean_rounds", "contaminated_rounds", "contended",
           "stall_wait_s", "neighbour_cpu", "busy_threads", "cpu_per_wall", "attempts", "repeats",
           "failed_repeats", "repeat_lo_s", "repeat_hi_s")


@dataclasses.dataclass
class Run:
    """Everything a report is built from."""

    run_dir: Path
    meta: dict
    records: list[Record]
    long: pd.DataFrame  # tidy(records), sorted
    cells: pd.DataFrame  # one row per cell: metrics, verdict, expected_failure, state, speedup
    raw_times: pd.DataFrame  # one row per timed round

    @property
    def kind(self) -> str:
        return self.meta.get("kind") or (self.cells["kind"].iat[0] if len(self.cells) else "")


def load_run(run_dir: Path) -> Run:
    """Read a run folder into the tables the report needs."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    records = merge_repeats(load_records(run_dir), meta)
    return Run(run_dir=run_dir, meta=meta, records=records,
               long=sort_rows(tidy(records)), cells=prepare_cells(records),
               raw_times=raw_times_table(records))


# Block ids of a pooled cell: repeat * REPEAT_BLOCKS + block, so blocks of different repeats
# stay apart (pairs are only taken inside one repeat's blocks).
REPEAT_BLOCKS = 1000
# Metrics of a pooled cell: the worst over its repeats (agreement), their sum, their median.
WORST_OF_REPEATS = ("loss_err_eps", "grad_err_eps", "loss_nonfinite", "grad_nonfinite",
                    "loss_abs_err", "grad_abs_err", "loss_rel_err", "grad_rel_err", "busy_threads",
                    "neighbour_cpu")
SUM_OF_REPEATS = ("stall_wait_s", "attempts")
MEDIAN_OF_REPEATS = ("peak_extra_bytes", "cpu_per_wall")


def merge_repeats(records: list[Record], meta: dict) -> list[Record]:
    """One record per cell: the records of a cell's repeats (``cell["repeat"]``) pooled
    (:func:`pool_repeats`), then every timing cell's floor computed from the run's best
    ceilings (``meta["ceilings"]["best"]``: the best any framework measured in any repeat),
    so that every cell of a run is judged against the same floor."""
    groups: dict[str, list[Record]] = {}
    for rec in records:
        groups.setdefault(cell_key({k: v for k, v in rec.cell.items() if k != "repeat"}),
                          []).append(rec)
    best = (meta.get("ceilings") or {}).get("best")
    min_rounds = int(meta.get("min_rounds") or 1)
    merged = []
    for group in groups.values():
        rec = group[0] if len(group) == 1 and not group[0].cell.get("repeat") else \
            pool_repeats(group, min_rounds)
        if best and rec.status == "ok" and rec.cell.get("kind") == "timing" and \
                "model_bytes" in rec.metrics and rec.metrics.get("median_s"):
            floor_of_run = floor.floor_metrics(rec.metrics, rec.cell["pass"], best,
                                               rec.metrics["median_s"])
            rec = dataclasses.replace(rec, metrics=rec.metrics | floor_of_run | {
                k: v for k, v in best.items() if isinstance(v, float)})
        merged.append(rec)
    return merged


def pool_repeats(group: list[Record], min_rounds: int) -> Record:
    """The records of one cell's repeats as one: its figures from the clean rounds of every
    repeat together, its interval from the spread of the repeats' medians (``repeat_lo_s``,
    ``repeat_hi_s``), its first call from the first repeat (later ones may find compile
    caches warm)."""
    group = sorted(group, key=lambda r: r.cell.get("repeat") or 0)
    ok = [r for r in group if r.status == "ok"]
    cell = {k: v for k, v in group[0].cell.items() if k != "repeat"}
    if not ok:
        first = group[0]
        return dataclasses.replace(first, cell=cell)
    base = ok[0]
    metrics = dict(base.metrics)
    raw = {k: v for k, v in base.raw.items() if k not in ("times_s", "clean", "block", "wait_s")}
    if all("times_s" in r.raw for r in ok):
        times, clean, blocks = [], [], []
        for r in ok:
            n = len(r.raw["times_s"])
            times += [float(v) for v in r.raw["times_s"]]
            flags = r.raw.get("clean")
            clean += list(flags) if isinstance(flags, list) and len(flags) == n else [True] * n
            if isinstance(r.raw.get("block"), list) and len(r.raw["block"]) == n:
                repeat = r.cell.get("repeat") or 0
                blocks += [repeat * REPEAT_BLOCKS + int(b) for b in r.raw["block"]]
        chosen = [t for t, c in zip(times, clean) if c] or times
        summary = Timing(first_call_s=base.metrics.get("first_call_s", 0.0),
                         times_s=chosen).summary()
        for key in ("median_s", "q1_s", "q3_s", "min_s", "iqr_rel", "noisy", "compile_s"):
            metrics[key] = summary[key]
        clean_rounds = sum(clean)
        # Contended: too few clean rounds pooled, or a repeat measured beside other work.
        neighboured = any(is_neighboured(r.metrics.get("neighbour_cpu")) for r in ok)
        metrics |= {"rounds": float(len(times)), "clean_rounds": float(clean_rounds),
                    "contaminated_rounds": float(len(times) - clean_rounds),
                    "contended": float(clean_rounds < min(min_rounds, len(times))
                                       or neighboured)}
        raw |= {"times_s": times, "clean": clean}
        if len(blocks) == len(times):
            raw["block"] = blocks
        medians = [r.metrics["median_s"] for r in ok if r.metrics.get("median_s")]
        if medians:
            metrics |= {"repeat_lo_s": min(medians), "repeat_hi_s": max(medians)}
    for key in WORST_OF_REPEATS:
        values = [r.metrics[key] for r in ok if r.metrics.get(key) is not None]
        if values:
            metrics[key] = max(values)
    for key in SUM_OF_REPEATS:
        values = [r.metrics[key] for r in ok if r.metrics.get(key) is not None]
        if values:
            metrics[key] = float(sum(values))
    for key in MEDIAN_OF_REPEATS:
        values = [r.metrics[key] for r in ok if r.metrics.get(key) is not None]
        if values:
            metrics[key] = float(np.median(values))
    metrics["repeats"] = float(len(ok))
    metrics["failed_repeats"] = float(len(group) - len(ok))
    return dataclasses.replace(base, cell=cell, metrics=metrics, raw=raw)


def rank_key(column: pd.Series) -> pd.Series:
    """Sort key of one column: dtypes, passes, forms and frameworks in their natural order,
    the framework's native variant before the others."""
    orders = {"dtype": DTYPE_ORDER, "pass": PASSES, "form": FORMS, "framework": FRAMEWORKS}
    if column.name in orders:
        order = {v: f"{i:02d}" for i, v in enumerate(orders[column.name])}
        return column.map(lambda v: order.get(v, f"99{v}"))
    if column.name == "variant":
        natives = set(agreement.NATIVE_VARIANT.values())
        return column.map(lambda v: f"0{v}" if v in natives else f"1{v}")
    return column


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in report order (stable: rows of one cell keep their order)."""
    keys = [k for k in SORT_KEYS if k in df.columns]
    if df.empty or not keys:
        return df.reset_index(drop=True)
    return df.sort_values(keys, key=rank_key, kind="stable").reset_index(drop=True)


def prepare_cells(records: list[Record]) -> pd.DataFrame:
    """The wide cell table with every metric the report reads, verdicts, each cell's state and
    its speedup over the framework's native op."""
    cells = cell_table(records)
    if not cells.empty:
        # The clean-round medians of each interleaved block (None for cells timed alone): the
        # pairs ratios are taken from.
        cells["blocks"] = [block_medians(rec) for rec in records]
    wanted = [*CELL_KEYS, "status", "error", *METRICS]
    cells = cells.reindex(columns=list(dict.fromkeys([*cells.columns, *wanted])))
    for name in METRICS:
        cells[name] = pd.to_numeric(cells[name], errors="coerce").astype("float64")
    cells = add_verdicts(cells)
    cells["state"] = cells["verdict"].where(cells["status"] == "ok", cells["status"])
    cells["severity"] = (cells["state"].map(agreement.SEVERITY)
                        .fillna(agreement.SEVERITY["error"]).astype(int))
    return sort_rows(add_speedup(cells))


def add_speedup(cells: pd.DataFrame) -> pd.DataFrame:
    """Add ``native_impl``, ``native_median_s`` and ``speedup_vs_native`` (the native op's time
    over this cell's, same case and pass) with its interval ``speedup_lo`` / ``speedup_hi``.
    Where both were measured in the same interleaved blocks, the speedup is the median of the
    block-by-block ratios and the interval their range (``speedup_paired`` 1); otherwise the
    ratio of the two medians, without an interval."""
    cells = cells.assign(native_impl=[
        agreement.native_id(fw, form) if fw in agreement.NATIVE_VARIANT else None
        for fw, form in zip(cells["framework"], cells["form"])
    ])
    if "blocks" not in cells:
        cells["blocks"] = None
    native = (cells.loc[cells["status"] == "ok", ["impl", *CASE_KEYS, "median_s", "blocks"]]
              .rename(columns={"impl": "native_impl", "median_s": "native_median_s",
                               "blocks": "native_blocks"})
              .drop_duplicates(["native_impl", *CASE_KEYS]))
    cells = cells.merge(native, on=["native_impl", *CASE_KEYS], how="left")
    cells["speedup_vs_native"] = cells["native_median_s"] / cells["median_s"]
    paired = [paired_ratio(nat, own) if isinstance(nat, dict) and isinstance(own, dict)
              else None for nat, own in zip(cells["native_blocks"], cells["blocks"])]
    cells["speedup_lo"] = [p[1] if p else float("nan") for p in paired]
    cells["speedup_hi"] = [p[2] if p else float("nan") for p in paired]
    cells["speedup_paired"] = [1.0 if p else 0.0 for p in paired]
    cells["speedup_vs_native"] = [p[0] if p else s
                                  for p, s in zip(paired, cells["speedup_vs_native"])]
    return cells.drop(columns=["native_blocks"])


def block_medians(rec: Record) -> dict[int, float] | None:
    """``{block: median of its clean rounds}`` of an interleaved cell (``raw["block"]``), or
    None for a cell timed alone."""
    blocks, times = rec.raw.get("block"), rec.raw.get("times_s") or []
    clean = rec.raw.get("clean") or [True] * len(times)
    if not isinstance(blocks, list) or len(blocks) != len(times) or len(clean) != len(times):
        return None
    by_block: dict[int, list[float]] = {}
    for block, t, ok in zip(blocks, times, clean):
        if ok:
            by_block.setdefault(int(block), []).append(float(t))
    return {b: float(np.median(v)) for b, v in by_block.items()} or None


RATIO_CONFIDENCE = 0.95


def median_interval(values: list[float], confidence: float = RATIO_CONFIDENCE
                    ) -> tuple[float, float]:
    """A distribution-free interval for the median of ``values``: the order statistics
    ``(x_(k), x_(n+1-k))`` with the largest ``k`` for which a Binomial(n, 1/2) count falls
    below ``k`` with probability at most ``(1 - confidence) / 2`` (each value is above or below
    the true median with probability 1/2, whatever their distribution). With too few values
    for that confidence (n < 6 at 95%), the lowest and highest."""
    x = sorted(values)
    n = len(x)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0
    while k < n // 2:
        below += math.comb(n, k) / 2**n  # P(count <= k)
        if below > tail:
            break
        k += 1
    k = max(k, 1)  # k = 0 would be no bound: fall back to the extremes
    return float(x[k - 1]), float(x[n - k])


def paired_ratio(numerator: dict[int, float], denominator: dict[int, float]
                 ) -> tuple[float, float, float] | None:
    """The median of the block-by-block ratios numerator / denominator over the blocks both
    have, with its interval (``median_interval``); None with fewer than 2 blocks in common (no
    interval can be said)."""
    common = sorted(set(numerator) & set(denominator))
    ratios = [numerator[b] / denominator[b] for b in common if denominator[b] > 0]
    if len(ratios) < 2:
        return None
    return (float(np.median(ratios)), *median_interval(ratios))


def raw_times_table(records: list[Record]) -> pd.DataFrame:
    """One row per timed round of every cell."""
    columns = ["run_id", *CELL_KEYS, "status", "round", "time_s"]
    rows = [
        {"run_id": rec.run_id, **_cell_columns(rec), "status": rec.status, "round": i,
         "time_s": float(t)}
        for rec in records
        for i, t in enumerate(rec.raw.get("times_s") or [])
    ]
    return sort_rows(pd.DataFrame(rows, columns=columns))


def figure_times(rec: Record) -> list[float]:
    """The rounds a cell's figures come from (``timing.Timing``): its clean rounds (those that
    did not wait for a CPU, ``raw["clean"]``), or every round where none is clean or the record
    does not say."""
    times = [float(t) for t in rec.raw.get("times_s") or []]
    clean = rec.raw.get("clean")
    if not isinstance(clean, list) or len(clean) != len(times):
        return times
    return [t for t, ok in zip(times, clean) if ok] or times


def failure_reasons() -> dict[str, str]:
    """Why each registered implementation is meant to fail (id -> reason)."""
    return {i.id: i.expected_failure for i in all_impls() if i.expected_failure}


def _cell_columns(rec: Record) -> dict:
    """The record's cell keys (every one of ``CELL_KEYS``, None where the cell lacks it)."""
    return {k: rec.cell.get(k) for k in CELL_KEYS}


def tidy(records: list[Record]) -> pd.DataFrame:
    """The long-form table: one row per record and metric."""
    rows = []
    for rec in records:
        base = {"run_id": rec.run_id, **_cell_columns(rec), "status": rec.status,
                "error": rec.error, **rec.labels}
        for k, v in rec.env.items():
            plain = isinstance(v, (str, int, float, bool)) or v is None
            base[f"env_{k}"] = v if plain else json.dumps(v)
        if not rec.metrics:
            rows.append({**base, "metric": None, "value": None})
        for name, value in rec.metrics.items():
            rows.append({**base, "metric": name, "value": None if value is None else float(value)})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["value"] = df["value"].astype("float64")
    return df


def cell_table(records: list[Record]) -> pd.DataFrame:
    """Wide view: one row per cell, one column per label and metric (for reports)."""
    return pd.DataFrame([{**_cell_columns(rec), "status": rec.status, "error": rec.error,
                          **rec.labels, **rec.metrics} for rec in records])


def add_verdicts(cells):
    """Add ``verdict`` and ``expected_failure`` columns to a wide agreement table (one row per
    cell, from :func:`cell_table`)."""
    expected = {i.id: i.expected_failure for i in all_impls()}
    cells = cells.copy()
    def key(impl_id, r):
        return (impl_id, r["n"], r["c"], r["dtype"], r["scale"], r["seed"], r["pass"], r["device"])

    by_key = {key(r["impl"], r): r for r in cells.to_dict("records")}
    verdicts = []
    for r in cells.to_dict("records"):
        if r["status"] != "ok":
            verdicts.append("error")
            continue
        nat_id = agreement.native_id(r["framework"], r["form"])
        nat = by_key.get(key(nat_id, r)) if r["impl"] != nat_id else None  # never its own bar
        native = nat if nat is not None and nat["status"] == "ok" else None
        verdicts.append(agreement.verdict(r, r["dtype"], native))
    cells["verdict"] = pd.Series(verdicts, index=cells.index, dtype="object")
    cells["expected_failure"] = cells["impl"].map(lambda i: bool(expected.get(i)))
    return cells
