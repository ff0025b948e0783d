"""Reports of a run folder, built only from what the folder holds.

``write_reports(run_dir)`` reads ``meta.json`` and ``records.jsonl`` and writes, into the same
folder:

- ``records.parquet`` and ``records.csv``: the tidy long table of ``analysis.run.tidy`` (one row per
  cell and metric), rows sorted by framework, variant, form, size, dtype, scale and pass;
- ``raw_times.parquet`` and ``raw_times.csv``: the raw timed rounds, one row per round (the cell
  keys, ``status``, ``round`` counted from 0 and ``time_s``); agreement runs have no rounds, so
  the table is empty there;
- ``plots/*.png``: agreement: a heatmap of the worst error; timing: time against C (each
  framework's fastest, with its IQR band), GB/s against C, % of limit and peak extra memory;
- ``report.md`` and ``report.html``: the same document twice; the HTML file stands alone (inline
  CSS, plots embedded as base64 PNG, failures highlighted in red).

Sections of both kinds: title and summary, Provenance (run table and a per-framework table),
Notes (skipped frameworks), Cell status, Errors. Then, for an agreement run: How to read the
agreement tables, one table per form, What this shows, Plots. For a timing run: Machine
ceilings and the floor model, Results (one ranked table per size, dtype and pass), Sparse versus
one-hot, Headlines, Plots. Both end with the Column glossary. A run without records gets the
header and a line saying so.

The document is built once as a list of blocks (headings, paragraphs, bullet lists, tables with
per-cell marks, figures) and rendered to Markdown and to HTML, so the two never disagree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xent_bench.analysis.compare_stats import DID_NOT_RUN
from xent_bench.analysis.run import (
    CASE_KEYS,
    Run,
    failure_reasons,
    load_run,
    paired_ratio,
    rank_key,
    sort_rows,
)
from xent_bench.harness import agreement, files
from xent_bench.harness.agreement import FAILING
from xent_bench.harness.stalls import NEIGHBOUR_LIMIT
from xent_bench.reports import behaviour_report, distributed_report, plots
from xent_bench.reports.document import (
    Bullets,
    Figure,
    Heading,
    Para,
    Table,
    make_table,
    plain,
    render_html,
    render_markdown,
)
from xent_bench.reports.format import (
    MISSING,
    PASS_SHORT,
    MiB,
    case_columns,
    case_label,
    distinct,
    first_clause,
    fmt_bytes,
    fmt_eps,
    fmt_num,
    fmt_ratio,
    fmt_size,
    impl_label,
    impl_list,
    is_missing,
    n_cells,
    ordered,
    verdict_text,
)
from xent_impls.vocabulary import DTYPE_ORDER, FORMS, FRAMEWORKS, LOW_PRECISION, PASSES, STATUSES

# --------------------------------------------------------------------------------------------
# Data files


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix Python types become strings (Parquet needs one type a column)."""
    df = df.copy()
    for name in df.columns:
        if df[name].dtype == object:
            kinds = {type(v) for v in df[name].dropna()}
            if len(kinds) > 1:
                df[name] = df[name].map(lambda v: v if v is None else str(v))
    return df


def write_tables(run: Run) -> dict[str, Path]:
    """Write the tidy table and the raw rounds as Parquet and CSV."""
    out = {}
    for name, df in (("records", run.long), ("raw_times", run.raw_times)):
        for fmt in ("parquet", "csv"):
            path = run.run_dir / f"{name}.{fmt}"
            if fmt == "parquet":
                files.write_with(path, lambda tmp, df=df: _arrow_safe(df).to_parquet(tmp,
                                                                                    index=False))
            else:
                files.write_with(path, lambda tmp, df=df: df.to_csv(tmp, index=False))
            out[f"{name}_{fmt}"] = path
    return out


# --------------------------------------------------------------------------------------------
# Common header


def header_blocks(run: Run) -> list:
    """Title and what the run holds: every report starts with these (provenance, notes, cell
    status and errors follow the results: ``closing_blocks``)."""
    meta = run.meta
    planned = len(meta.get("cells") or [])
    summary = (f"Kind **{run.kind}**, preset `{meta.get('preset')}`, device "
               f"`{meta.get('device')}`: {n_cells(len(run.cells))} recorded of {planned} planned.")
    if len(run.cells) < planned:
        command = "run" if run.kind == "timing" else run.kind
        summary += (f" {n_cells(planned - len(run.cells))} without a record (an interrupted run: "
                    f"finish it with `xent-bench {command} --resume RUN_FOLDER`).")
    return [Heading(1, f"xent-bench {run.kind} report: {meta.get('run_id')}"), Para(summary)]


def closing_blocks(run: Run) -> list:
    """Cell status and errors, then provenance and notes: after the results."""
    notes = run.meta.get("notes") or []
    return (status_blocks(run.cells) + error_blocks(run.cells) + provenance_blocks(run)
            + [Heading(2, "Notes"),
               Bullets([plain(n) for n in notes]) if notes
               else Para("Every registered framework was installed.")])


def provenance_blocks(run: Run) -> list:
    """The run-wide provenance table and one row of environment per framework."""
    meta, machine = run.meta, run.meta.get("machine") or {}
    envs = [rec.env for rec in run.records]
    labels = run.cells.get("cache_mode", [])
    rows = [
        ("run id", meta.get("run_id")), ("kind", run.kind), ("preset", meta.get("preset")),
        ("device", meta.get("device")), ("CPU model", machine.get("cpu_model")),
        ("CPU count", machine.get("cpu_count")), ("threads requested", meta.get("threads")),
        ("allocator", meta.get("allocator")),
        ("git commit",
         distinct([machine.get("git_commit"), *(e.get("git_commit") for e in envs)])),
        ("python", machine.get("python")), ("platform", machine.get("platform")),
        ("host", machine.get("hostname")), ("started", machine.get("started")),
        ("finished", meta.get("finished") or "not finished"),
    ]
    if run.kind == "timing":
        rows += [("time budget", (f"{meta.get('budget_s')} s of rounds per cell, "
                                 f"{meta.get('min_rounds')}-{meta.get('max_rounds')} rounds")),
                 ("cache mode", distinct(labels)),
                 ("thread rule", meta.get("threads_rule")),
                 ("CPU pinning", meta.get("pinning") or "not recorded"),
                 ("load average (1 min) at start / end", _load_text(meta)),
                 ("stall detection", distinct(run.cells.get("stall_source", []))),
                 ("contention", contention_text(run.cells))]
    table = make_table([{"item": k, "value": MISSING if is_missing(v) else v} for k, v in rows],
                       left=2)
    blocks = [Heading(2, "Provenance"), table]
    fw_rows = []
    for fw in ordered([rec.cell.get("framework") for rec in run.records], FRAMEWORKS):
        fw_envs = [rec.env for rec in run.records if rec.cell.get("framework") == fw]
        fw_rows.append({
            "framework": fw,
            "versions": distinct(", ".join(f"{k} {v}" for k, v in sorted(e["versions"].items()))
                                  for e in fw_envs if e.get("versions")),
            "device name": distinct(e.get("device_name") for e in fw_envs),
            "threads applied": distinct(e.get("threads_applied") for e in fw_envs),
            "CPUs": distinct(",".join(map(str, e["cpus"])) for e in fw_envs if e.get("cpus")),
            "sync": distinct(e.get("sync") for e in fw_envs),
            "allocator": distinct(e.get("allocator") for e in fw_envs),
        })
    if fw_rows:
        blocks.append(make_table(fw_rows, left=6, caption="Per framework, from the records' env."))
    return blocks


def _load_text(meta: dict) -> str:
    start, end = meta.get("load_average_start"), meta.get("load_average_end")
    return " / ".join(MISSING if v is None else f"{v:.2f}" for v in (start, end))


def contention_text(cells: pd.DataFrame) -> str:
    """Contended cells, contaminated rounds and the share of the timed time spent waiting for a
    CPU, over the timing cells that ran."""
    timed = cells[(cells["status"] == "ok") & cells["rounds"].notna()]
    if timed.empty or timed["clean_rounds"].isna().all():
        return MISSING
    rounds = timed["rounds"].sum()
    dirty = timed["contaminated_rounds"].sum()
    waited = timed["stall_wait_s"].sum()
    timed_s = (timed["median_s"] * timed["rounds"]).sum()
    share = (f"; the threads' waits for a CPU, summed over threads (a framework's own threads "
             f"waiting for each other included), came to {100 * waited / timed_s:.1f}% of the "
             "timed time") if timed_s else ""
    beside = timed["neighbour_cpu"].dropna()
    others = (f"; {int((beside > NEIGHBOUR_LIMIT).sum())} cells measured beside other work "
              f"on the machine (over {NEIGHBOUR_LIMIT:g} CPUs; the most {beside.max():.2f})"
              if len(beside) else "")
    return (f"{int((timed['contended'] == 1).sum())} of {len(timed)} cells contended; "
            f"{int(dirty)} of {int(rounds)} rounds contaminated{share}{others}")


def status_blocks(cells: pd.DataFrame) -> list:
    """Counts of ok / error / oom cells per framework."""
    blocks = [Heading(2, "Cell status")]
    if cells.empty:
        return blocks + [Para("No records: the run folder holds no finished cell.")]
    counts = pd.crosstab(cells["framework"], cells["status"])
    statuses = ordered(counts.columns, STATUSES)
    counts = counts.reindex(index=ordered(counts.index, FRAMEWORKS),
                            columns=list(dict.fromkeys([*STATUSES, *statuses])), fill_value=0)
    counts.loc["all"] = counts.sum()
    counts["total"] = counts.sum(axis=1)
    rows, marks = [], []
    for fw, row in counts.iterrows():
        rows.append({"framework": fw, **{k: int(v) for k, v in row.items()}})
        marks.append({k: "bad" for k in row.index if k not in ("ok", "total") and row[k]})
    return blocks + [make_table(rows, marks)]


def error_blocks(cells: pd.DataFrame) -> list:
    """Every cell that did not run, with its message (errors are never hidden)."""
    failed = cells[cells["status"] != "ok"]
    if failed.empty:
        return [Heading(2, "Errors"), Para("No cell failed to run.")]
    rows = [{"impl": r["impl"], "case": case_label(r), "pass": r["pass"], "status": r["status"],
             "message": r["error"] or MISSING}
            for r in failed.to_dict("records")]
    marks = [{"status": "bad"} for _ in rows]
    return [Heading(2, "Errors"),
            Para(f"{n_cells(len(rows))} did not produce a result:"),
            make_table(rows, marks, left=5)]


# --------------------------------------------------------------------------------------------
# Agreement report


def agreement_grid(cells: pd.DataFrame) -> pd.DataFrame:
    """Worst state and largest loss / grad errors per (implementation, dtype, scale), over sizes,
    passes and seeds."""
    grid = (cells.groupby(["impl", "framework", "variant", "form", "dtype", "scale"], sort=False)
            .agg(severity=("severity", "max"), loss=("loss_err_eps", "max"),
                 grad=("grad_err_eps", "max"), expected=("expected_failure", "any"))
            .reset_index())
    by_severity = {v: k for k, v in agreement.SEVERITY.items()}
    grid["state"] = grid["severity"].map(by_severity)
    grid["column"] = [f"{d} s={s:g}" for d, s in zip(grid["dtype"], grid["scale"])]
    return sort_rows(grid)


def _grid_columns(grid: pd.DataFrame) -> list[str]:
    keys = grid[["dtype", "scale", "column"]].drop_duplicates()
    keys = keys.assign(rank=rank_key(keys["dtype"])).sort_values(["rank", "scale"])
    return list(keys["column"])


def agreement_table(grid: pd.DataFrame, caption: str) -> Table:
    """Implementations down, dtype and scale across, the worst verdict and errors in each cell."""
    columns = _grid_columns(grid)
    rows, marks = {}, {}
    for r in grid.to_dict("records"):
        label = impl_label(r["impl"], r["expected"])
        text, mark = verdict_text(r["state"], r["loss"], r["grad"], r["expected"])
        rows.setdefault(label, {"implementation": label})[r["column"]] = text
        marks.setdefault(label, {})[r["column"]] = mark
    frame_rows = [{k: row.get(k, MISSING) for k in ["implementation", *columns]}
                  for row in rows.values()]
    return make_table(frame_rows, list(marks.values()), caption=caption)


def agreement_legend(cells: pd.DataFrame) -> list:
    """What the numbers mean: the metric, the tolerances, the as-native rule, and which
    implementations are meant to fail."""
    tol_rows = [{"dtype": d, "loss (eps)": fmt_num(t["loss"]), "gradient (eps)": fmt_num(t["grad"])}
                for d, t in agreement.TOLERANCE_EPS.items()]
    natives = ", ".join(f"{fw}: `{v}`" for fw, v in agreement.NATIVE_VARIANT.items())
    reasons = failure_reasons()
    meant = sorted(set(cells.loc[cells["expected_failure"], "impl"]))
    blocks = [
        Heading(2, "How to read the agreement tables"),
        Para("Each cell shows the worst verdict over sizes and passes, then the largest loss / "
             "gradient error in units of the dtype's epsilon (eps). Loss error: "
             "max |a - r| / (eps * max(1, max|x|)) per row, so rounding at the scale the "
             "computation works at counts as ~1 eps. Gradient error: max |N g - N g_ref| / eps "
             "(the per-example gradient, independent of N). r and g_ref come from the float64 "
             "oracle on exactly the rounded inputs the implementation received."),
        Para(f"Verdicts: `pass` (within the tolerance below), `as-native` (a 16-bit result that "
             f"misses the table but is within {agreement.NATIVE_SLACK:g}x of its framework's "
             f"native op on the same case; native ops: {natives}), `FAIL` (finite but outside "
             f"both), `nonfinite` (inf or NaN in the output), `error` / `oom` (did not run). "
             f"Failures of implementations marked \"(meant to fail)\" are shown as expected; "
             f"unexpected ones are in bold."),
        make_table(tol_rows, caption="Tolerance (agreement.TOLERANCE_EPS)."),
    ]
    if meant:
        blocks.append(Bullets([f"`{i}` is meant to fail: {reasons.get(i, 'see the registry')}"
                               for i in meant]))
    return blocks


def _onset_phrase(rows: pd.DataFrame) -> str:
    """'from scale 100 at float32 and bfloat16 and from scale 10 at float16' for the smallest
    scale of each dtype in ``rows``."""
    onset = rows.groupby("dtype")["scale"].min()
    by_scale: dict[float, list[str]] = {}
    for dtype in ordered(onset.index, DTYPE_ORDER):
        by_scale.setdefault(onset[dtype], []).append(dtype)
    return " and ".join(f"from scale {s:g} at {' and '.join(d)}" for s, d in by_scale.items())


def _who(impls: list[str]) -> str:
    variants = sorted({i.split("/")[1] for i in impls if i.count("/") == 2})
    if len(impls) > 1 and len(variants) == 1:
        return f"The {variants[0]} variants ({impl_list(impls)})"
    return impl_list(impls)


def _why(expected: bool, reason: str | None) -> str:
    if expected:
        return f" (meant to fail: {first_clause(reason)})" if reason else " (meant to fail)"
    return " — **unexpected**"


def failure_findings(grid: pd.DataFrame, state: str, verb: str) -> list[str]:
    """One bullet per group of implementations that reach ``state`` from the same scales."""
    hit = grid[grid["state"] == state]
    if hit.empty:
        return []
    reasons = failure_reasons()
    groups: dict[tuple, list[str]] = {}
    for impl, rows in hit.groupby("impl", sort=False):
        key = (_onset_phrase(rows), bool(rows["expected"].iat[0]), reasons.get(impl))
        groups.setdefault(key, []).append(impl)
    bullets = []
    for (onset, expected, reason), impls in groups.items():
        worst = ""
        if state == "fail":
            rows = hit[hit["impl"].isin(impls)]
            worst = (f"; worst loss error {fmt_eps(rows['loss'].max())} eps, gradient "
                     f"{fmt_eps(rows['grad'].max())} eps")
        # "return inf/NaN" for several implementations, "returns inf/NaN" for one.
        verb_form = verb if len(impls) > 1 else verb.replace("return ", "returns ", 1)
        bullets.append(f"{_who(impls)} {verb_form} {onset}{worst}{_why(expected, reason)}.")
    return bullets


def agreeing_findings(grid: pd.DataFrame) -> list[str]:
    """Which implementations pass (at 16 bits: pass or match native) at every size and scale,
    one bullet per group of dtypes with the same outcome."""
    outcomes: dict[tuple, list[str]] = {}
    for dtype in ordered(grid["dtype"], DTYPE_ORDER):
        good = ["pass", "unchecked"] + (["as-native"] if dtype in LOW_PRECISION else [])
        ok = (grid[grid["dtype"] == dtype].groupby("impl", sort=False)["state"]
              .agg(lambda s, good=good: s.isin(good).all()))
        key = (int(ok.sum()), len(ok), tuple(ok.index[~ok]), dtype in LOW_PRECISION)
        outcomes.setdefault(key, []).append(dtype)
    bullets = []
    for (passed, total, others, low), dtypes in outcomes.items():
        what = "pass or match their native op" if low else "pass"
        text = (f"At {' and '.join(dtypes)}, {passed} of {total} implementations {what} at every "
                "size and scale")
        bullets.append(text + (f"; the others: {impl_list(others)}." if others else "."))
    return bullets


def largest_error_finding(cells: pd.DataFrame, dtype: str = "float32") -> list[str]:
    """The largest finite error at ``dtype`` among implementations not meant to fail."""
    stable = cells[(cells["dtype"] == dtype) & ~cells["expected_failure"]
                   & (cells["variant"] != agreement.NATIVE_VARIANT["numpy"])
                   & cells["state"].isin(["pass", "as-native", "fail"])]
    parts = []
    for q, name in (("loss_err_eps", "loss"), ("grad_err_eps", "gradient")):
        values = stable[q].replace([np.inf, -np.inf], np.nan).dropna()
        if not values.empty:
            r = stable.loc[values.idxmax()]
            parts.append(f"{name} {fmt_eps(r[q])} eps (`{r['impl']}`, {case_label(r)}, "
                         f"{r['pass']})")
    if not parts:
        return []
    return [f"Largest {dtype} error among implementations not meant to fail: "
            + "; ".join(parts) + "."]


def worse_than_native_findings(cells: pd.DataFrame) -> list[str]:
    """16-bit implementations whose error exceeds NATIVE_SLACK x their native op's error on the
    same case (native error counted as at least 1 eps, the output rounding)."""
    low = cells[cells["dtype"].isin(LOW_PRECISION) & (cells["status"] == "ok")
                & (cells["impl"] != cells["native_impl"])]
    errors = ["loss_err_eps", "grad_err_eps"]
    native = (cells.loc[cells["status"] == "ok", ["impl", *CASE_KEYS, *errors]]
              .rename(columns={"impl": "native_impl"}))
    merged = low.merge(native, on=["native_impl", *CASE_KEYS], suffixes=("", "_native"))
    if merged.empty:
        return []
    ratio = pd.concat([merged[f"{q}_err_eps"] / merged[f"{q}_err_eps_native"].clip(lower=1.0)
                       for q in ("loss", "grad")], axis=1).max(axis=1)
    merged = merged.assign(ratio=ratio)
    merged = merged[np.isfinite(merged["ratio"]) & (merged["ratio"] > agreement.NATIVE_SLACK)]
    if merged.empty:
        return [(f"No 16-bit implementation is more than {agreement.NATIVE_SLACK:g}x worse than "
                "its framework's native op on the same case.")]
    expected = dict(zip(cells["impl"], cells["expected_failure"]))
    items = []
    for impl, rows in merged.groupby("impl", sort=False):
        where = " and ".join(ordered(rows["dtype"], DTYPE_ORDER))
        meant = " (meant to fail)" if expected.get(impl) else ""
        items.append(f"`{impl}`{meant} {rows['ratio'].max():.0f}x at {where}")
    return [(f"Worse than their native op by more than {agreement.NATIVE_SLACK:g}x at 16 bits "
            f"(largest error ratio, native error counted as at least 1 eps): {'; '.join(items)}.")]


def agreement_findings(cells: pd.DataFrame, grid: pd.DataFrame) -> list[str]:
    """The generated 'What this shows' list."""
    unexpected = sorted(set(grid.loc[grid["state"].isin(FAILING) & ~grid["expected"], "impl"]))
    bullets = [f"**Unexpected failures**: {impl_list(unexpected)}." if unexpected else
               "No unexpected failure: every implementation that misses the oracle is meant to."]
    bullets += agreeing_findings(grid)
    bullets += failure_findings(grid, "nonfinite", "return inf/NaN")
    bullets += failure_findings(grid, "fail", "return finite but wrong values")
    bullets += largest_error_finding(cells)
    bullets += worse_than_native_findings(cells)
    errors = int((cells["status"] != "ok").sum())
    if errors:
        bullets.append(f"{n_cells(errors)} did not run (see Errors).")
    return bullets


def agreement_blocks(run: Run) -> list:
    """Legend, one table per form, findings and the error heatmap."""
    cells = run.cells
    grid = agreement_grid(cells)
    blocks = agreement_legend(cells)
    sizes = ", ".join(fmt_size(n, c) for n, c in
                      cells[["n", "c"]].drop_duplicates().sort_values(["c", "n"]).to_numpy())
    passes = ", ".join(ordered(cells["pass"], PASSES))
    for form in ordered(grid["form"], FORMS):
        caption = (f"{form} form; worst over sizes {sizes} and passes {passes}; "
                   "cell: verdict loss/gradient error in eps.")
        blocks += [Heading(3, f"{form} form"), agreement_table(grid[grid["form"] == form], caption)]
    blocks += [Heading(2, "What this shows"), Bullets(agreement_findings(cells, grid))]
    return blocks


def agreement_figures(run: Run, grid: pd.DataFrame | None = None) -> list[Figure]:
    """A heatmap of the worst error (max of loss and gradient, eps) per implementation."""
    cells = run.cells
    if cells.empty:
        return []
    grid = agreement_grid(cells) if grid is None else grid
    grid = grid.assign(worst=grid[["loss", "grad"]].max(axis=1),
                       label=[impl_label(i, e) for i, e in zip(grid["impl"], grid["expected"])])
    grid.loc[grid["state"] == "nonfinite", "worst"] = np.inf
    grid.loc[grid["state"].isin(DID_NOT_RUN), "worst"] = np.nan
    text = [{"nonfinite": "NaN/inf", "error": "err", "oom": "oom"}.get(s, fmt_eps(w))
            for s, w in zip(grid["state"], grid["worst"])]
    grid = grid.assign(text=text)
    values, labels = _matrix(grid, "worst", "text", columns=_grid_columns(grid))
    path = plots.heatmap(values, labels, path=run.run_dir / "plots" / "agreement_errors.png",
                         title="Worst error against the float64 oracle (eps; black: inf/NaN)",
                         colorbar="max(loss, gradient) error, eps", cmap="RdYlGn_r",
                         vmin=0.1, vmax=1e4, log=True)
    caption = "Worst error per implementation, dtype and scale (eps, log colour)"
    return [Figure(path, caption)] if path else []


def _matrix(df: pd.DataFrame, values: str, text: str, columns: list[str]):
    """``df[values]`` and ``df[text]`` as label x column matrices (rows in ``df``'s order), for
    a heatmap."""
    rows = list(dict.fromkeys(df["label"]))
    wide = df.drop_duplicates(["label", "column"]).pivot(index="label", columns="column",
                                                        values=[values, text])
    return (wide[values].reindex(index=rows, columns=columns).astype(float),
            wide[text].reindex(index=rows, columns=columns).fillna(""))


# --------------------------------------------------------------------------------------------
# Timing report


def ceiling_blocks(meta: dict) -> list:
    """The measured ceilings per framework and the run-wide best, with the floor model."""
    ceilings = meta.get("ceilings") or {}
    blocks = [Heading(2, "Machine ceilings and the floor model"),
              Para("Floor of a cell = max(bytes / bandwidth, exponentials / exp throughput), with "
                   "L = N * C * itemsize of the logits, bytes = L for forward (read bandwidth) or "
                   "2L for forward+backward (copy bandwidth), +L for one-hot targets, one exp per "
                   "logit."),
              Para("% of limit = floor / median time (100% = the machine's measured limit); "
                   "GB/s = modelled bytes / median time. Ceilings: the best of every framework's "
                   "own copy and read-only sum over a DRAM-sized array, and of its exp rate "
                   "measured several ways (exp over a DRAM-sized array; on CPU also over a "
                   "cache-resident block, fused with a row reduction, and as its own "
                   "cross-entropy: the fastest counts), measured by every worker of every repeat "
                   "of this run, on this device.")]
    per_fw = ceilings.get("per_framework") or {}
    if not per_fw:
        return blocks + [Para("This run has no measured ceilings: no floor and no % of limit.")]
    keys = (("copy GB/s", "copy_GBps"), ("read GB/s", "read_GBps"), ("exp G/s", "exp_Gps"))
    detail = (("exp DRAM G/s", "exp_dram_Gps"), ("exp cached G/s", "exp_cached_Gps"))
    rows = [{"framework": fw, **{label: fmt_num(per_fw[fw].get(k)) for label, k in keys + detail},
             "exp method": per_fw[fw].get("exp_method") or MISSING}
            for fw in ordered(per_fw, FRAMEWORKS)]
    best = ceilings.get("best") or {}
    rows.append({"framework": "best (used for floors)",
                 **{label: f"{fmt_num(best.get(k))} ({best.get(k + '_by', MISSING)})"
                    for label, k in keys}})
    return blocks + [make_table(rows)]


TIMING_COLUMNS = ("#", "impl", "median ms", "IQR", "rounds", "GB/s", "% of limit", "bound",
                  "calls/s", "peak extra MiB", "retained MiB", "first call ms", "compile s",
                  "vs native", "verdict")


def timing_row(r: dict) -> tuple[dict, dict]:
    """Text and marks of one implementation in a ranked timing table."""
    label = impl_label(r["impl"], r["expected_failure"])
    if r["status"] != "ok":
        return ({"impl": label, "median ms": r["status"], "verdict": r["status"]},
                {"median ms": "bad", "verdict": "bad"})
    noisy = r["noisy"] == 1
    contended = r["contended"] == 1
    verdict, vmark = verdict_text(r["state"], r["loss_err_eps"], r["grad_err_eps"],
                                  r["expected_failure"])
    bound = {1.0: "exp", 0.0: "memory"}.get(r["floor_bound"], MISSING)
    text = {
        "impl": label, "median ms": fmt_num(r["median_s"] * 1e3),
        "IQR": MISSING if is_missing(r["iqr_rel"]) else
        f"{100 * r['iqr_rel']:.0f}%" + (" noisy" if noisy else ""),
        "rounds": MISSING if is_missing(r["rounds"]) else _rounds_text(r),
        "GB/s": fmt_num(r["GBps"]),
        "% of limit": fmt_num(r["pct_of_limit"], 2), "bound": bound,
        "calls/s": fmt_num(r["calls_per_s"]),
        "peak extra MiB": fmt_bytes(r["peak_extra_bytes"]),
        "retained MiB": fmt_bytes(r["retained_bytes"]),
        "first call ms": fmt_num(r["first_call_s"] * 1e3), "compile s": fmt_num(r["compile_s"]),
        "vs native": _speedup_text(r), "verdict": verdict,
    }
    marks = {"IQR": "warn" if noisy else "", "verdict": vmark,
             "% of limit": "bad" if r["pct_of_limit"] > 100 else "",
             "rounds": "warn" if contended else "", "median ms": "warn" if contended else ""}
    return text, marks


def _speedup_text(r: dict) -> str:
    """The speedup over the native op, with the range of its block-by-block ratios where the
    two were measured side by side."""
    text = fmt_ratio(r["speedup_vs_native"])
    if r.get("speedup_paired") == 1 and r["impl"] != r.get("native_impl"):
        text += f" ({fmt_ratio(r['speedup_lo'])}-{fmt_ratio(r['speedup_hi'])})"
    return text


def _rounds_text(r: dict) -> str:
    """Clean rounds of all rounds, e.g. ``48/50``; ``contended`` when too few were clean or
    other work ran beside the cell."""
    total = int(r["rounds"])
    if is_missing(r["clean_rounds"]):
        return str(total)
    text = f"{int(r['clean_rounds'])}/{total}"
    return text + " contended" if r["contended"] == 1 else text


def ranked(group: pd.DataFrame) -> pd.DataFrame:
    """Clean cells fastest first, then contended cells (too few rounds free of CPU waits, or
    other work beside them: shown, not ranked as if clean), then the ones that did not run
    (in implementation order)."""
    ok = group[group["status"] == "ok"]
    contended = ok["contended"] == 1
    clean = ok[~contended].sort_values(["median_s", "impl"], kind="stable")
    return pd.concat([clean, ok[contended].sort_values(["median_s", "impl"], kind="stable"),
                      group[group["status"] != "ok"]])


def case_groups(cells: pd.DataFrame):
    """(n, c, dtype, pass) groups of a timing run, in report order."""
    order = cells[["n", "c", "dtype", "pass"]].drop_duplicates()
    order = order.sort_values(["c", "n", "dtype", "pass"], key=rank_key, kind="stable")
    for n, c, dtype, pass_ in order.to_numpy():
        yield (n, c, dtype, pass_), cells[(cells["n"] == n) & (cells["c"] == c)
                                          & (cells["dtype"] == dtype) & (cells["pass"] == pass_)]


def result_blocks(cells: pd.DataFrame) -> list:
    """One ranked table per size, dtype and pass."""
    blocks = [Heading(2, "Results"),
              Para("Implementations ranked by median time per size, dtype and pass. Bold: % of "
                   "limit above 100 (a measurement problem) or an unexpected failure; cells whose "
                   "IQR exceeds 10% of the median are marked noisy.")]
    for (n, c, dtype, pass_), group in case_groups(cells):
        rows, marks = [], []
        for rank, r in enumerate(ranked(group).to_dict("records"), start=1):
            text, mark = timing_row(r)
            rows.append({"#": str(rank) if r["status"] == "ok" else MISSING, **text})
            marks.append(mark)
        table = make_table([{k: row.get(k, MISSING) for k in TIMING_COLUMNS} for row in rows],
                       marks, left=2)
        blocks += [Heading(3, f"{fmt_size(n, c)} {dtype} {pass_}"), table]
    return blocks


def form_ratios(cells: pd.DataFrame) -> pd.DataFrame:
    """Per framework/variant and case: one-hot over sparse median time and peak extra memory
    (NaN where either peak is zero: below what the memory probe resolves)."""
    keys = ["framework", "variant", "n", "c", "dtype", "scale", "seed", "pass", "device"]
    ok = cells[(cells["status"] == "ok") & cells["form"].isin(FORMS)]
    wide = (ok.drop_duplicates([*keys, "form"]).set_index([*keys, "form"])
            [["median_s", "peak_extra_bytes", "blocks"]].unstack("form"))
    if wide.empty or wide.columns.get_level_values("form").nunique() < 2:
        return pd.DataFrame()
    peaks = wide["peak_extra_bytes"].where(wide["peak_extra_bytes"] > 0)
    time_ratio = wide[("median_s", "onehot")] / wide[("median_s", "sparse")]
    # Forms measured in the same interleaved blocks: the median of the block-by-block ratios.
    paired = [paired_ratio(a, b) if isinstance(a, dict) and isinstance(b, dict) else None
              for a, b in zip(wide[("blocks", "onehot")], wide[("blocks", "sparse")])]
    out = pd.DataFrame({
        "time_ratio": [p[0] if p else r for p, r in zip(paired, time_ratio)],
        "memory_ratio": peaks["onehot"] / peaks["sparse"],
    }, index=wide.index).dropna(subset=["time_ratio"]).reset_index()
    return sort_rows(out)


def form_blocks(cells: pd.DataFrame) -> list:
    """Sparse versus one-hot: one table per pass, framework/variant down, size and dtype
    across, each cell 'time ratio / memory ratio'."""
    ratios = form_ratios(cells)
    blocks = [Heading(2, "Sparse versus one-hot"),
              Para("Each cell: one-hot median time / sparse median time, then one-hot peak extra "
                   "memory / sparse peak extra memory (same framework and variant, same case). "
                   f"Above 1x: the one-hot form costs more; {MISSING} where a peak is zero "
                   "(below what the memory probe resolves).")]
    if ratios.empty:
        return blocks + [Para("No implementation ran in both forms on the same case.")]
    ratios = ratios.assign(
        name=ratios["framework"] + "/" + ratios["variant"],
        column=[f"{fmt_size(n, c)} {d}" for n, c, d in ratios[["n", "c", "dtype"]].to_numpy()],
        text=[f"{fmt_ratio(t)} / {fmt_ratio(m)}"
              for t, m in zip(ratios["time_ratio"], ratios["memory_ratio"])])
    columns = list(dict.fromkeys(
        ratios.sort_values(["c", "n", "dtype"], key=rank_key, kind="stable")["column"]))
    for pass_ in ordered(ratios["pass"], PASSES):
        part = ratios[ratios["pass"] == pass_]
        table = (part.pivot(index="name", columns="column", values="text")
                 .reindex(index=list(dict.fromkeys(part["name"])),
                          columns=[c for c in columns if c in set(part["column"])]))
        rows = [{"framework/variant": name, **row.dropna().to_dict()}
                for name, row in table.iterrows()]
        blocks += [Heading(3, pass_), make_table(rows)]
    return blocks


def headline_findings(cells: pd.DataFrame, threads: int | None = None) -> list[str]:
    """The generated 'Headlines' list of a timing run."""
    measured = cells[cells["status"] == "ok"]
    if measured.empty:
        return ["No cell produced a timing."]
    bullets = []
    contended = measured[measured["contended"] == 1]
    ok = measured[measured["contended"] != 1]  # headlines rank clean cells only
    if not contended.empty:
        bullets.append(f"{n_cells(len(contended))} of {len(measured)} stayed contended (too few "
                       "rounds free of waits for a CPU, or other work on the machine beside "
                       "them, after re-measuring): shown in the tables, left out of these "
                       "headlines.")
    if ok.empty:
        return bullets
    by_size_pass: dict[tuple, list[str]] = {}
    # "Fastest" names an implementation a reader could use: not one meant to fail.
    for (n, c, dtype, pass_), group in case_groups(ok[~ok["expected_failure"].astype(bool)]):
        best = group.loc[group["median_s"].idxmin()]
        by_size_pass.setdefault((n, c, pass_), []).append(
            f"{dtype} `{best['impl']}` {fmt_num(best['median_s'] * 1e3)} ms "
            f"({fmt_num(best['pct_of_limit'], 2)}% of limit)")
    for (n, c, pass_), items in by_size_pass.items():
        bullets.append(f"Fastest at {fmt_size(n, c)} {pass_}: " + "; ".join(items) + ".")
    honest = ok[ok["pct_of_limit"] <= 100]
    if not honest.empty:
        top = honest.loc[honest["pct_of_limit"].idxmax()]
        bullets.append(f"Closest to the machine limit: `{top['impl']}` at {case_label(top)} "
                       f"{top['pass']}, {fmt_num(top['pct_of_limit'], 2)}% of its floor.")
    over = ok[ok["pct_of_limit"] > 100]
    if not over.empty:
        names = ", ".join(f"`{r['impl']}` {case_label(r)} {r['pass']} "
                          f"({fmt_num(r['pct_of_limit'], 3)}%)" for r in over.to_dict("records"))
        bullets.append(f"**{n_cells(len(over))} faster than the floor (above 100% of limit)**: "
                       f"a measurement problem (a ceiling measured too low, or inputs that stay in "
                       f"cache), not a real result: {names}.")
    noisy = int((ok["noisy"] == 1).sum())
    bullets.append(f"{noisy} of {len(ok)} timed cells are noisy (IQR above 10% of the median).")
    bullets += thread_findings(measured, threads)
    wrong = ok[ok["state"].isin(FAILING) & ~ok["expected_failure"]]
    if not wrong.empty:
        bullets.append("**Timed output fails the agreement check**: "
                       + ", ".join(f"`{r['impl']}` {case_label(r)} {r['pass']} ({r['state']})"
                                   for r in wrong.to_dict("records")) + ".")
    failed = int((cells["status"] != "ok").sum())
    if failed:
        bullets.append(f"{n_cells(failed)} did not run (see Errors).")
    return bullets


def thread_findings(cells: pd.DataFrame, threads: int | None) -> list[str]:
    """Implementations that kept more threads busy than the run's thread count (measured from
    the scheduler's CPU time per thread over the timed rounds: ``busy_threads``)."""
    if not threads or cells["busy_threads"].isna().all():
        return []
    over = cells[cells["busy_threads"] > threads]
    if over.empty:
        return [f"Every timed cell kept at most the {int(threads)} requested thread(s) busy."]
    most = over.groupby("impl")["busy_threads"].max()
    return [f"More threads busy than the {int(threads)} requested (the framework runs threads "
            "of its own beside the op's): " + ", ".join(
                f"`{impl}` up to {int(n)}" for impl, n in most.items()) + "."]


def timing_blocks(run: Run) -> list:
    """Headlines and which implementation to use first, then ceilings, ranked tables and
    sparse versus one-hot."""
    headlines = headline_findings(run.cells, run.meta.get("threads"))
    return ([Heading(2, "Headlines"), Bullets(headlines)] + choice_blocks(run.cells)
            + ceiling_blocks(run.meta) + result_blocks(run.cells) + form_blocks(run.cells))


def usable_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The timed cells a reader may pick from: they ran, were measured clean (not contended),
    their timed output is within tolerance (verdict pass or as-native), and the implementation
    is not one meant to fail (a textbook formula that overflows at larger logits passes at the
    timing runs' scale 1, but is no answer to "which should I use")."""
    return cells[(cells["status"] == "ok") & (cells["contended"] != 1)
                 & cells["state"].isin(("pass", "as-native")) & cells["median_s"].notna()
                 & ~cells["expected_failure"].astype(bool)]


def fastest_per_framework(cells: pd.DataFrame) -> pd.DataFrame:
    """Per size, dtype, pass and framework, the usable cell (:func:`usable_cells`) with the
    smallest median (ties: the first implementation id), in report order: the rule of the
    "which to use" table, applied to every framework."""
    usable = usable_cells(cells).sort_values(["median_s", "impl"], kind="stable")
    best = usable.drop_duplicates(["n", "c", "dtype", "pass", "framework"])
    return best.sort_values(["c", "n", "dtype", "pass", "framework"], key=rank_key,
                            kind="stable").reset_index(drop=True)


def choice_rows(cells: pd.DataFrame) -> list[dict]:
    """One row per size, dtype and pass: the fastest of the :func:`usable_cells`, its time,
    % of limit and peak extra memory, and each other framework's fastest."""
    rows = []
    for (n, c, dtype, pass_), group in case_groups(fastest_per_framework(cells)):
        # each framework's fastest, fastest first: the first is the one to use
        best, *others = (r for _, r in group.sort_values(["median_s", "impl"],
                                                         kind="stable").iterrows())
        rows.append({
            "case": f"{fmt_size(n, c)} {dtype} {PASS_SHORT.get(pass_, pass_)}",
            "use": best["impl"], "median ms": fmt_num(best["median_s"] * 1e3),
            "% of limit": fmt_num(best["pct_of_limit"], 2),
            "peak extra MiB": fmt_bytes(best["peak_extra_bytes"]),
            "fastest of each other framework": "; ".join(
                f"{o['impl']} {fmt_num(o['median_s'] * 1e3)} ms" for o in others) or MISSING})
    return rows


def choice_blocks(cells: pd.DataFrame) -> list:
    """The "which to use" table (:func:`choice_rows`)."""
    rows = choice_rows(cells)
    if not rows:
        return []
    return [Heading(2, "Which to use"),
            Para("Per size, dtype and pass: the fastest implementation whose timed output agreed "
                 "with the float64 oracle within tolerance and whose rounds were clean, with "
                 "each other framework's fastest for comparison. Times of different frameworks "
                 "were measured in different processes (not paired); the ranked tables below "
                 "have every implementation."),
            make_table(rows, left=2)]


def pct_of_limit_figure(ok: pd.DataFrame, path: Path) -> Figure | None:
    """Heatmap of % of limit: implementations down, cases across."""
    grid = ok.dropna(subset=["pct_of_limit"])
    if grid.empty:
        return None
    grid = grid.assign(
        column=case_columns(grid),
        label=[impl_label(i, e) for i, e in zip(grid["impl"], grid["expected_failure"])],
        text=[fmt_num(v, 2) + ("!" if v > 100 else "") for v in grid["pct_of_limit"]])
    order = grid.sort_values(["c", "n", "dtype", "pass"], key=rank_key, kind="stable")
    values, labels = _matrix(grid, "pct_of_limit", "text",
                             columns=list(dict.fromkeys(case_columns(order))))
    drawn = plots.heatmap(values, labels, path=path, colorbar="% of limit", vmin=0, vmax=100,
                          title="% of limit (floor / median; black: above 100%)")
    return Figure(drawn, "% of limit per implementation and case") if drawn else None


TIME_CAPTION = ("Median time (ms, log scale) against C of each framework's fastest "
                "implementation per case, chosen by the rule of \"Which to use\" (clean rounds, "
                "output within tolerance; the marker names the implementation); band: the "
                "interquartile range, q1 to q3 of the clean rounds")


def time_figure(cells: pd.DataFrame, path: Path) -> Figure | None:
    """Time against C, one line per framework: its fastest usable implementation per case
    (:func:`fastest_per_framework`) with the IQR as a band."""
    best = fastest_per_framework(cells)
    if best.empty:
        return None
    points = best.assign(median_ms=best["median_s"] * 1e3, q1_ms=best["q1_s"] * 1e3,
                         q3_ms=best["q3_s"] * 1e3)
    drawn = plots.time_against_classes(
        points, path=path, title="Time against the number of classes: each framework's fastest")
    return Figure(drawn, TIME_CAPTION) if drawn else None


def timing_figures(run: Run) -> list[Figure]:
    """Time against C (each framework's fastest), GB/s against C (every implementation, a
    column of panels per framework), a % of limit heatmap and peak extra memory against C."""
    ok = run.cells[run.cells["status"] == "ok"]
    if ok.empty:
        return []
    out = run.run_dir / "plots"
    lines = ok.assign(series=ok["framework"] + "/" + ok["variant"],
                      peak_MiB=ok["peak_extra_bytes"] / MiB)
    # GB/s keeps every implementation (the time plot shows only each framework's fastest), so
    # that a reader can see how the variants of one framework compare; one panel held 40 lines.
    # A column per framework and a row per pass and dtype leave a dozen lines a panel, told
    # apart by colour (variant) and line style (form); a shared y axis along each row keeps
    # the frameworks comparable.
    gbps = plots.lines_by_framework(lines, y="GBps", ylabel="GB/s (modelled bytes / median)",
                                    path=out / "gbps_vs_classes.png",
                                    title="Bandwidth against the number of classes, every "
                                          "implementation")
    peak = plots.lines_by_classes(lines, y="peak_MiB", ylabel="peak extra memory, MiB",
                                  path=out / "peak_memory.png",
                                  title="Peak extra memory against the number of classes")
    figures = [
        time_figure(run.cells, out / "time_ms.png"),
        Figure(gbps, "GB/s against C of every implementation, a column of panels per framework "
                     "(colour: variant, line style: form)") if gbps else None,
        pct_of_limit_figure(ok, out / "pct_of_limit.png"),
        Figure(peak, "Peak extra memory (MiB) against C") if peak else None,
    ]
    return [f for f in figures if f is not None]


# --------------------------------------------------------------------------------------------
# Glossary

GLOSSARY = {
    "timing": [
        ("#", "rank by median time within the table (contended cells after the clean ones, "
              "cells that did not run last)"),
        ("impl", ("implementation id framework/variant/form; \"(meant to fail)\": the registry "
                 "expects it to disagree with the oracle in some cases")),
        ("median ms", ("median of the clean timed rounds (steady state, first call excluded; "
                      "rounds that waited for a CPU left out); or the cell's status (error, "
                      "oom) when it did not run")),
        ("IQR", "interquartile range / median of the clean rounds; \"noisy\" above 10%"),
        ("rounds", ("clean rounds / timed rounds (calibrated to the time budget); a round is "
                    "contaminated when a thread waited for a CPU longer than a scheduler slice "
                    "and the waits took over 5% of it; \"contended\": too few clean rounds, or "
                    "more than a quarter of a CPU of other work on the machine while the cell "
                    "ran (neighbour_cpu), even after measuring again; shown but not ranked as "
                    "clean")),
        ("GB/s", "modelled bytes (floor model) / median time"),
        ("% of limit", ("floor / median time: 100% is the machine's measured limit; above 100% "
                       "means the measurement or the ceiling is wrong")),
        ("bound", "which floor term binds: exp (exponential throughput) or memory (bandwidth)"),
        ("calls/s", "1 / median time; the useful figure when C is tiny and dispatch dominates"),
        ("peak extra MiB", ("peak memory of a steady-state call in rounds of its own, above a "
                           "clean baseline (GPU: allocator peak; CPU: peak RSS, the largest of "
                           "three trials)")),
        ("retained MiB", "memory the first call left resident (caches, compiled code, pools)"),
        ("first call ms", "the first call: trace, compile and run"),
        ("compile s", "first call minus the steady-state median"),
        ("vs native", ("the framework's native op time / this time, same form and case (above "
                      "1x: faster than native); where the two were timed in interleaved blocks, "
                      "the median of the block-by-block ratios, with their range in brackets")),
        ("verdict", ("agreement of the timed output's first rows with the float64 oracle, "
                    "then loss[/gradient] error in eps (forward: loss only)")),
        ("time ratio / memory ratio", ("sparse-versus-one-hot tables: one-hot over sparse median "
                                      "time / peak extra memory")),
    ],
    "agreement": [
        ("implementation", ("implementation id; \"(meant to fail)\" when the registry expects it "
                           "to disagree in some cases")),
        ("dtype s=scale", "the logits dtype and logit scale of the case"),
        ("cell", ("worst verdict over sizes and passes, then the largest loss/gradient error in "
                 "eps; pass, as-native, FAIL, nonfinite, error, oom; \"(expected)\" for a "
                 "failure of an implementation meant to fail")),
    ],
    "data": [
        ("records.parquet / .csv", "tidy long table: one row per cell and metric"),
        ("run_id, kind", "the run and its kind (agreement or timing)"),
        ("impl, framework, form, variant", "the implementation"),
        ("n, c, dtype, scale, seed", "the case: rows, classes, logits dtype, logit scale, seed"),
        ("pass, device", "forward or forward_backward; cpu or cuda"),
        ("status, error", "ok, error or oom, and the error message"),
        ("out_dtype, cache_mode", "labels: agreement output dtype; timing cache handling"),
        ("env_*", ("provenance: versions (JSON), device_name, threads, threads_applied, cpus "
                  "(the worker's CPU affinity), sync, allocator, cpu_model, git_commit, device")),
        ("metric, value", ("metric name and value, e.g. median_s, q1_s, q3_s, iqr_rel, noisy, "
                          "rounds, first_call_s, compile_s, model_bytes, floor_s, floor_bound, "
                          "GBps, pct_of_limit, calls_per_s, peak_extra_bytes, retained_bytes, "
                          "loss_err_eps, grad_err_eps, *_max_abs, *_max_rel, *_nonfinite")),
        ("raw_times.parquet / .csv", ("one row per timed round: the cell keys, status, round "
                                     "(from 0) and time_s")),
    ],
}


def glossary_blocks(kind: str) -> list:
    """The column glossary: the report's own table columns, then the data files."""
    blocks = [Heading(2, "Column glossary")]
    for section, title in ((kind, "Report tables"), ("data", "Data files")):
        entries = GLOSSARY.get(section)
        if entries:
            blocks += [Heading(3, title),
                       make_table([{"column": k, "meaning": v} for k, v in entries], left=2)]
    return blocks


# --------------------------------------------------------------------------------------------
# Entry point


def build_document(run: Run) -> tuple[list, list[Figure]]:
    """The report's blocks and the figures they embed (the figures are written to disk)."""
    blocks = header_blocks(run)
    figures: list[Figure] = []
    if run.cells.empty:
        blocks.append(Para("No records: nothing to report yet."))
    elif run.kind == "agreement":
        blocks += agreement_blocks(run)
        figures = agreement_figures(run)
    elif run.kind == "behaviour":
        blocks += behaviour_report.summary_blocks(run)
    else:
        blocks += timing_blocks(run)
        figures = timing_figures(run)
    if figures:
        blocks += [Heading(2, "Plots"), *figures]
    if run.kind != "behaviour" and (run.run_dir / "behaviour.md").exists():
        blocks += [Heading(2, "Behaviour under bad input"),
                   Para("This run folder also holds a behaviour report: "
                        "[behaviour.md](behaviour.md) ([HTML](behaviour.html)).")]
    return blocks + closing_blocks(run) + glossary_blocks(run.kind), figures


def write_reports(run_dir) -> dict:
    """Write the data files, plots, report.md and report.html of a run folder.

    Returns ``{"markdown", "html", "parquet", "csv", "raw_parquet", "raw_csv": Path,
    "plots": [Path, ...]}``.
    """
    return write_run_reports(load_run(Path(run_dir)))


def write_run_reports(run: Run) -> dict:
    """``write_reports`` of a run already loaded."""
    tables = write_tables(run)
    blocks, figures = build_document(run)
    md_path, html_path = run.run_dir / "report.md", run.run_dir / "report.html"
    files.write_text(md_path, render_markdown(blocks))
    title = f"xent-bench {run.kind} report: {run.meta.get('run_id')}"
    files.write_text(html_path, render_html(blocks, title))
    extra = {}
    if run.kind == "distributed":  # the per-world table with memory per rank and communication
        extra["distributed"] = distributed_report.write_report(run.run_dir)
    if run.kind == "behaviour":  # the full matrices, linked from report.md
        full = behaviour_report.full_blocks(run)
        extra["behaviour"] = run.run_dir / "behaviour.md"
        files.write_text(extra["behaviour"], render_markdown(full))
        files.write_text(run.run_dir / "behaviour.html",
                         render_html(full, f"xent-bench behaviour: {run.meta.get('run_id')}"))
    return extra | {"markdown": md_path, "html": html_path, "parquet": tables["records_parquet"],
            "csv": tables["records_csv"], "raw_parquet": tables["raw_times_parquet"],
            "raw_csv": tables["raw_times_csv"], "plots": [f.path for f in figures],
            "summary": closing_summary(run)}


# How many "Fastest at ..." headlines the closing summary repeats.
SUMMARY_HEADLINES = 3


def closing_summary(run: Run) -> list[str]:
    """What a finished run prints: its cells by outcome and, for a timing run, the contended
    cells, the cells above 100% of the limit and the first fastest-per-case headlines."""
    cells = run.cells
    if cells.empty:
        return [f"{run.meta.get('run_id')}: no cell recorded"]
    counts = cells["status"].value_counts()
    outcome = ", ".join(f"{int(counts[k])} {k}" for k in ("ok", "error", "oom") if k in counts)
    lines = [f"{run.meta.get('run_id')}: {n_cells(len(cells))} ({outcome})"]
    if run.kind != "timing":
        return lines
    ok = cells[cells["status"] == "ok"]
    above = int((ok["pct_of_limit"] > 100).sum())
    lines[0] += (f"; {int((ok['contended'] == 1).sum())} contended, {above} above 100% of the "
                 "limit")
    fastest = [b for b in headline_findings(cells, run.meta.get("threads"))
               if b.startswith("Fastest at ")]
    lines += [b.replace("`", "") for b in fastest[:SUMMARY_HEADLINES]]
    if len(fastest) > SUMMARY_HEADLINES:
        lines.append(f"... {len(fastest) - SUMMARY_HEADLINES} more cases in the report's "
                     "Headlines")
    return lines

