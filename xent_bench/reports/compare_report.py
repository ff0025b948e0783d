"""Reports of several runs: a comparison of two, a merge of several (machines side by side), a
history of chosen cells across an ordered list of runs.

Each is built as a list of ``xent_bench.reports.document`` blocks and rendered with its Markdown
and HTML renderers (so the two never disagree), plus a plain-text table for the terminal.
Output folder (``write_*``): ``<name>.md``, ``<name>.html`` (self-contained), ``<name>.csv``
(the data behind the tables) and ``plots/*.png``, with ``<name>`` one of ``comparison``,
``merge``, ``history``.
The statistics and verdicts come from ``xent_bench.analysis.compare``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from xent_bench.analysis import compare, compare_stats
from xent_bench.analysis.run import Run
from xent_bench.harness import files
from xent_bench.reports import plots
from xent_bench.reports.document import (
    Bullets,
    Figure,
    Heading,
    Para,
    Table,
    make_table,
    render_html,
    render_markdown,
)
from xent_bench.reports.format import (
    MISSING,
    PASS_SHORT,
    case_columns,
    case_label,
    distinct,
    fmt_bytes,
    fmt_num,
    fmt_ratio,
    fmt_size,
    is_missing,
    n_cells,
    verdict_text,
)

VERDICT_COLOURS = {"slower": "#c0392b", "faster": "#2471a3", "same": "#1e8449",
                   "too noisy": "#b9770e"}
VERDICT_MARKS = {"slower": "bad", "too noisy": "warn", "more": "bad", "worse": "bad"}
MAX_TREND_LINES = 12


# --------------------------------------------------------------------------------------------
# Shared pieces


def render_text(t: Table) -> str:
    """A table as aligned plain text for a terminal (leading ``t.left`` columns left-aligned)."""
    cols = [str(c) for c in t.frame.columns]
    body = [[str(v) for v in row] for row in t.frame.itertuples(index=False)]
    widths = [max([len(c), *(len(r[j]) for r in body)]) for j, c in enumerate(cols)]

    def line(cells):
        return "  ".join(c.ljust(w) if j < t.left else c.rjust(w)
                         for j, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cols), rule, *(line(r) for r in body)])


def _ceilings_text(meta: dict) -> str:
    best = (meta.get("ceilings") or {}).get("best") or {}
    if not best:
        return MISSING
    return (f"copy {fmt_num(best.get('copy_GBps'))} / read {fmt_num(best.get('read_GBps'))} "
            f"GB/s, exp {fmt_num(best.get('exp_Gps'))} G/s")


def run_provenance(run: Run) -> dict:
    """One run's provenance as a row: where, on what and from which code it was measured."""
    meta, machine = run.meta, run.meta.get("machine") or {}
    envs = [rec.env for rec in run.records]
    versions = distinct(", ".join(f"{k} {v}" for k, v in sorted(e["versions"].items()))
                         for e in envs if e.get("versions"))
    source = "pytest-benchmark" if "pytest-benchmark" in (meta.get("source") or {}) else "runner"
    return {
        "run id": meta.get("run_id"), "kind": run.kind, "source": source,
        "git commit": distinct([machine.get("git_commit"), *(e.get("git_commit") for e in envs)]),
        "CPU model": machine.get("cpu_model") or MISSING,
        "device": distinct([meta.get("device"), *(e.get("device_name") for e in envs)]),
        "versions": versions, "threads": meta.get("threads"), "allocator": meta.get("allocator"),
        "ceilings": _ceilings_text(meta), "started": machine.get("started") or MISSING,
    }


def runs_table(runs: list[Run], labels: list[str]) -> Table:
    """Provenance, one row per run."""
    rows = [{"run": label, **run_provenance(run)} for run, label in zip(runs, labels)]
    return make_table(rows, left=len(rows[0]) if rows else 1,
                  caption="Provenance of each run (ceilings: the best measured in that run).")


def _case(row: dict) -> str:
    """``256x1000 float32 fwd+bwd`` (timing) or ``32x100 float32 scale 10 fwd+bwd``."""
    if row.get("kind") == "agreement":
        return f"{case_label(row)} {PASS_SHORT.get(row['pass'], row['pass'])}"
    return case_columns(pd.DataFrame([row]))[0]


def _ms(value) -> str:
    return fmt_num(value * 1e3) if not is_missing(value) else MISSING


def _interval(lo, hi) -> str:
    if is_missing(lo) or is_missing(hi):
        return MISSING
    return f"{fmt_num(lo)}-{fmt_num(hi)}"


def _write(blocks: list, out_dir: Path, name: str, title: str, data: pd.DataFrame) -> dict:
    files.check_output_dir(out_dir)
    paths = {"markdown": out_dir / f"{name}.md", "html": out_dir / f"{name}.html",
             "csv": out_dir / f"{name}.csv"}
    files.write_text(paths["markdown"], render_markdown(blocks))
    files.write_text(paths["html"], render_html(blocks, title))
    files.write_with(paths["csv"], lambda tmp: data.to_csv(tmp, index=False))
    return paths


# --------------------------------------------------------------------------------------------
# Comparison of two runs


def comparison_rows(cmp: compare.Comparison) -> tuple[list[dict], list[dict]]:
    """Text and marks of the main comparison table, worst first: regressions, then by ratio."""
    table = cmp.table.assign(
        _bad=lambda t: (t["speed"] == "slower") | (t["memory"] == "more")
        | (t["accuracy"] == "worse"))
    table = table.sort_values(["_bad", "rel_ratio"], ascending=[False, False],
                              na_position="last", kind="stable")
    timing = cmp.new.kind != "agreement"
    rows, marks = [], []
    for r in table.to_dict("records"):
        accuracy = r["accuracy"] + (f" ({r['accuracy_note']})" if r["accuracy_note"] else "")
        row = {"impl": r["impl"], "case": _case(r)}
        if timing:
            row |= {"base ms": _ms(r["base_median_s"]), "new ms": _ms(r["new_median_s"]),
                    "ratio": fmt_ratio(r["ratio"]), "shift": _shift_text(r),
                    "judged": fmt_ratio(r["rel_ratio"]),
                    "95% interval": _interval(r["rel_lo"], r["rel_hi"]), "speed": r["speed"],
                    "base MiB": fmt_bytes(r["base_peak_extra_bytes"]),
                    "new MiB": fmt_bytes(r["new_peak_extra_bytes"]), "memory": r["memory"]}
        else:
            row |= {side: verdict_text(r[f"{side}_state"], r[f"{side}_loss_err_eps"],
                                       r[f"{side}_grad_err_eps"], False)[0]
                    for side in ("base", "new")}
        row["accuracy"] = accuracy
        rows.append(row)
        marks.append({"speed": VERDICT_MARKS.get(r["speed"], ""),
                      "memory": VERDICT_MARKS.get(r["memory"], ""),
                      "accuracy": VERDICT_MARKS.get(r["accuracy"], "")})
    return rows, marks


def _shift_text(row: dict) -> str:
    """The common shift a cell's ratio was divided by, or a dash where none was taken out."""
    return fmt_ratio(row["shift"]) if row.get("shift_used") == 1.0 else MISSING


def shift_rows(cmp: compare.Comparison) -> list[dict]:
    """One row per group of cells measured side by side: its common shift and whether it was
    taken out."""
    rows = []
    for r in compare.shift_table(cmp.table).to_dict("records"):
        rows.append({"group": r["shift_group"], "cells": int(r["shift_cells"]),
                     "common shift": fmt_ratio(r["shift"]),
                     "taken out": "yes" if r["shift_used"] == 1.0 else
                     "no (the cells did not move together)"})
    return rows


def _counts_text(counts: dict[str, int], order) -> str:
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    return ", ".join(parts) if parts else "none"


def comparison_summary(cmp: compare.Comparison, fail_on) -> list[str]:
    """The summary bullets: cells matched, verdict counts, the run-wide shift and the outcome."""
    o = cmp.options
    bullets = [f"{n_cells(len(cmp.table))} in both runs; {len(cmp.only_base)} only in the base "
               f"run, {len(cmp.only_new)} only in the new run."]
    if cmp.new.kind != "agreement":
        bullets.append(
            f"Speed: {_counts_text(cmp.counts('speed'), compare_stats.SPEED_VERDICTS)} (slower: "
            f"the interval above {o.slower_above:.2f}x; faster: below {o.faster_below:.2f}x; same: "
            f"within {o.faster_below:.2f}-{o.slower_above:.2f}x).")
        ratios = cmp.table["ratio"].dropna()
        if len(ratios):
            bullets.append(
                f"Run-wide shift: the median ratio is {fmt_ratio(ratios.median())} over "
                f"{n_cells(len(ratios))} (range {fmt_ratio(ratios.min())} to "
                f"{fmt_ratio(ratios.max())}); a shift of every cell together comes from the "
                "machine or from something every implementation shares.")
        bullets.append(_shift_summary(cmp))
        memory = _counts_text(cmp.counts("memory"), compare_stats.MEMORY_VERDICTS)
        bullets.append(f"Memory: {memory}.")
    accuracy = _counts_text(cmp.counts("accuracy"), compare_stats.ACCURACY_VERDICTS)
    bullets.append(f"Accuracy: {accuracy}.")
    found = cmp.regressions(fail_on)
    watched = ", ".join(fail_on) if fail_on else "nothing (--fail-on none)"
    if len(found):
        bullets.append(f"**{n_cells(len(found))} regressed** (failing on {watched}): exit "
                       "status 1.")
    else:
        bullets.append(f"No regression beyond the thresholds (failing on {watched}): exit "
                       "status 0.")
    return bullets


def _shift_summary(cmp: compare.Comparison) -> str:
    if cmp.options.shift == "none":
        return "Common shifts: not taken out (--shift none): each cell is judged on its raw ratio."
    groups = compare.shift_table(cmp.table)
    used = groups[groups["shift_used"] == 1.0]
    if groups.empty:
        return ("Common shifts: none (no group of cells measured side by side has "
                f"{compare.MIN_SHIFT_CELLS} or more timed cells): raw ratios judged.")
    shifts = used["shift"]
    text = (f"Common shifts taken out: {len(used)} of {len(groups)} groups of cells measured "
            "side by side")
    if len(shifts):
        text += f" (from {fmt_ratio(shifts.min())} to {fmt_ratio(shifts.max())})"
    return (text + "; each cell is judged on its ratio over its group's shift (table "
            "\"Common shifts\"; --shift none judges raw ratios).")


def rule_blocks(o: compare_stats.Options) -> list:
    """How the verdicts are drawn, with this comparison's numbers."""
    return [
        Heading(2, "How the verdicts are drawn"),
        Bullets([
            f"Speed: ratio = new median / base median over the raw rounds; interval: "
            f"{o.confidence:.0%} percentile bootstrap ({o.resamples} resamples of each run's "
            f"rounds, seed {o.seed}). With threshold t = {o.threshold:g} and run-to-run drift "
            f"allowance D = {o.drift:g}, the band is B = 1 + max(t, D) = {o.slower_above:.2f}: "
            f"**slower** when the interval's lower bound exceeds B; **faster** when its upper "
            f"bound is below 1/B = {o.faster_below:.2f}; **same** when the interval lies within "
            f"[{o.faster_below:.2f}, {o.slower_above:.2f}]; otherwise **too noisy** to tell.",
            "The bootstrap interval covers only the noise inside each run; D covers the machine "
            "changing between runs (on this project's shared 2-core VM, quiet reruns of "
            "unchanged code moved a cell's median by up to 1.28x). Calibrate D on your "
            "machine: run `xent-bench stability`, or compare two runs of unchanged code with "
            "`--drift 0`.",
            "Common shift (--shift group, the default): between two runs the whole machine "
            "changes speed (on this project's shared 2-core VM every cell of a worker moved "
            "together, by 0.70x-1.07x between two quiet runs a minute apart). Cells measured "
            "side by side share that shift: the median ratio of "
            "the narrowest group with at least "
            f"{compare.MIN_SHIFT_CELLS} timed cells (one interleaved case; else the framework's "
            "cells of one pass; else all the framework's cells) estimates it, and where at "
            f"least {compare.SHIFT_MAJORITY:.0%} of the group's cells lie within the band of "
            "it, each cell's ratio and interval are divided by it before the band is applied "
            "(column *judged*). A change common to every cell of a group (a new framework "
            "version) looks the same as the machine: the shifts are listed, and --shift none "
            "judges the raw ratios.",
            f"Memory (peak extra bytes): **more** / **less** when the peaks differ by more than "
            f"{o.memory_threshold:.0%} of the smaller and more than "
            f"{fmt_bytes(o.memory_floor_bytes, trim=True)} MiB; otherwise **same**.",
            "Accuracy: **worse** when the cell's state got more severe (pass -> as-native -> "
            "fail -> nonfinite -> error -> oom) or, in the same failing state, a loss or gradient "
            "error grew by more than the dtype's tolerance (agreement.TOLERANCE_EPS); **better** "
            "the other way round; n/a when a run did not check the cell.",
        ]),
    ]


def ratio_figure(cmp: compare.Comparison, out_dir: Path) -> Figure | None:
    """Forest plot of every timed cell's ratio and interval."""
    t = cmp.table
    if t.empty or t["ratio"].isna().all():
        return None
    t = t.sort_values("rel_ratio", ascending=False, kind="stable")
    df = pd.DataFrame({"label": [f"{r['impl']} {_case(r)}" for r in t.to_dict("records")],
                       "ratio": t["rel_ratio"], "lo": t["rel_lo"], "hi": t["rel_hi"],
                       "verdict": t["speed"]})
    o = cmp.options
    path = plots.intervals(df, path=out_dir / "plots" / "ratios.png",
                           title="New / base median time per cell (over its group's common "
                                 "shift), with its interval",
                           xlabel="judged ratio of medians (new / base)",
                           band=(1 - o.threshold, 1 + o.threshold),
                           cuts=(o.faster_below, o.slower_above), colours=VERDICT_COLOURS)
    if path is None:
        return None
    return Figure(path, f"Ratios with their {o.confidence:.0%} intervals; grey band: same "
                        f"(±{o.threshold:.0%}); dashed: the bounds an interval must clear to "
                        "count as faster or slower")


def only_rows(cmp: compare.Comparison) -> list[dict]:
    """Cells present in one run only."""
    rows = []
    for which, frame in (("base", cmp.only_base), ("new", cmp.only_new)):
        for r in frame.to_dict("records"):
            rows.append({"only in": which, "impl": r["impl"], "case": _case(r),
                         "status": r.get("status") or MISSING})
    return rows


def regression_rows(cmp: compare.Comparison, fail_on) -> list[dict]:
    """One row per regressed cell: what regressed, with its numbers."""
    rows = []
    for r in cmp.regressions(fail_on).to_dict("records"):
        what = []
        if "slower" in fail_on and r["speed"] == "slower":
            shift = (f", raw {fmt_ratio(r['ratio'])} over a common shift of "
                     f"{fmt_ratio(r['shift'])}" if r.get("shift_used") == 1.0 else "")
            what.append(f"slower {fmt_ratio(r['rel_ratio'])} "
                        f"({_interval(r['rel_lo'], r['rel_hi'])}{shift})")
        if "memory" in fail_on and r["memory"] == "more":
            what.append(f"memory {fmt_bytes(r['base_peak_extra_bytes'])} -> "
                        f"{fmt_bytes(r['new_peak_extra_bytes'])} MiB")
        if "accuracy" in fail_on and r["accuracy"] == "worse":
            what.append(f"accuracy {r['accuracy_note']}")
        rows.append({"impl": r["impl"], "case": _case(r), "regression": "; ".join(what)})
    return rows


def main_table(cmp: compare.Comparison) -> Table:
    rows, marks = comparison_rows(cmp)
    return make_table(rows, marks, left=2)


def comparison_blocks(cmp: compare.Comparison, fail_on, figure: Figure | None) -> list:
    """The comparison document."""
    base_id, new_id = cmp.base.meta.get("run_id"), cmp.new.meta.get("run_id")
    blocks = [Heading(1, f"xent-bench comparison: {new_id} against {base_id}"),
              Bullets(comparison_summary(cmp, fail_on)),
              Heading(2, "Runs"), runs_table([cmp.base, cmp.new], ["base", "new"])]
    regressed = regression_rows(cmp, fail_on)
    if regressed:
        blocks += [Heading(2, "Regressions"),
                   make_table(regressed, [{"regression": "bad"}] * len(regressed), left=3)]
    shifts = shift_rows(cmp) if cmp.new.kind != "agreement" else []
    if shifts:
        blocks += [Heading(2, "Common shifts"),
                   make_table(shifts, left=1, caption="The median ratio of each group of cells "
                              "measured side by side: the machine's change of speed, or a "
                              "change every cell of the group shares.")]
    blocks += [Heading(2, "Cells in both runs")]
    blocks += [main_table(cmp)] if len(cmp.table) else [Para("The runs share no cell.")]
    only = only_rows(cmp)
    if only:
        blocks += [Heading(2, "Cells in one run only"), make_table(only, left=4)]
    blocks += rule_blocks(cmp.options)
    if figure is not None:
        blocks += [Heading(2, "Plot"), figure]
    return blocks


def write_comparison(cmp: compare.Comparison, out_dir: Path,
                     fail_on=tuple(compare_stats.REGRESSION)) -> dict:
    """Write comparison.md / .html / .csv and plots/ratios.png into ``out_dir``; returns the
    paths."""
    out_dir = Path(out_dir)
    figure = ratio_figure(cmp, out_dir)
    blocks = comparison_blocks(cmp, fail_on, figure)
    title = f"xent-bench comparison {cmp.new.meta.get('run_id')} / {cmp.base.meta.get('run_id')}"
    data = pd.concat([cmp.table.assign(presence="both"),
                      cmp.only_base.assign(presence="base only"),
                      cmp.only_new.assign(presence="new only")], ignore_index=True)
    paths = _write(blocks, out_dir, "comparison", title, data)
    paths["plots"] = [figure.path] if figure else []
    return paths


def terminal_summary(cmp: compare.Comparison, fail_on) -> str:
    """What the command prints: the summary, the regressions and the main table."""
    lines = [f"comparison: {cmp.new.meta.get('run_id')} (new) against "
             f"{cmp.base.meta.get('run_id')} (base)"]
    lines += [f"- {b.replace('**', '')}" for b in comparison_summary(cmp, fail_on)]
    regressed = regression_rows(cmp, fail_on)
    if regressed:
        lines += ["", "Regressions:", render_text(make_table(regressed, left=3))]
    if len(cmp.table):
        lines += ["", render_text(main_table(cmp))]
    only = only_rows(cmp)
    if only:
        lines += ["", "Cells in one run only:", render_text(make_table(only, left=4))]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Merge: several runs (e.g. machines) side by side


def _cell_label(row: dict) -> str:
    return f"{row['impl']} {_case(row)}"


def _merge_entry(r: dict, label: str, timing: bool) -> tuple[str, str]:
    """Text and mark of one run's entry for one cell of the merged table."""
    state = r[f"state@{label}"]
    if state is None:
        return MISSING, ""
    if state in compare_stats.DID_NOT_RUN:
        return state, "bad"
    if timing:
        return fmt_num(r[f"pct_of_limit@{label}"], 2), ""
    return verdict_text(state, r[f"loss_err_eps@{label}"], r[f"grad_err_eps@{label}"], False)


def merge_blocks(runs: list[Run], labels: list[str], table: pd.DataFrame,
                 figure: Figure | None) -> list:
    """The merged document: provenance per run, then per cell each run's % of limit and median
    (timing runs) or verdict and errors in eps (agreement runs)."""
    timing = any(run.kind != "agreement" for run in runs)
    blocks = [Heading(1, f"xent-bench merged report: {len(runs)} runs"),
              Para("Each run's floor comes from the machine ceilings measured in that run on its "
                   "own device, so **% of limit** (floor / median) compares different hardware: "
                   "how close each machine came to its own limit. Median times are shown too; "
                   "they compare only like with like." if timing else
                   "Agreement verdicts and loss/gradient errors (eps) of each run per cell."),
              Heading(2, "Runs"), runs_table(runs, labels), Heading(2, "Cells")]
    rows, marks = [], []
    for r in table.to_dict("records"):
        row, mark = {"impl": r["impl"], "case": _case(r)}, {}
        for label in labels:
            column = f"{label} % of limit" if timing else label
            row[column], mark[column] = _merge_entry(r, label, timing)
        if timing:
            row |= {f"{label} ms": _ms(r[f"median_s@{label}"]) for label in labels}
        rows.append(row)
        marks.append(mark)
    blocks.append(make_table(rows, marks, left=2) if rows else Para("No cell in any run."))
    if figure is not None:
        blocks += [Heading(2, "Plot"), figure]
    return blocks


def write_merge(runs: list[Run], out_dir: Path) -> dict:
    """Write merge.md / .html / .csv and plots/pct_of_limit.png into ``out_dir``."""
    out_dir = Path(out_dir)
    labels = compare.run_labels(len(runs))
    table = compare.side_by_side(runs, labels, metrics=("median_s", "pct_of_limit",
                                                        "loss_err_eps", "grad_err_eps"))
    figure = None
    pct = [f"pct_of_limit@{label}" for label in labels]
    if not table.empty and table[pct].notna().any().any():
        names = [_cell_label(r) for r in table.to_dict("records")]
        values = table[pct].set_axis(labels, axis=1).set_axis(names).astype(float)
        text = values.map(lambda v: MISSING if is_missing(v) else fmt_num(v, 2))
        path = plots.heatmap(values, text, path=out_dir / "plots" / "pct_of_limit.png",
                             title="% of limit per cell and run", colorbar="% of limit",
                             vmin=0, vmax=100)
        figure = Figure(path, "% of limit per cell (rows) and run (columns)") if path else None
    blocks = merge_blocks(runs, labels, table, figure)
    paths = _write(blocks, out_dir, "merge", f"xent-bench merged report: {len(runs)} runs",
                   table)
    paths["plots"] = [figure.path] if figure else []
    return paths


# --------------------------------------------------------------------------------------------
# History: chosen cells across an ordered list of runs


def history_blocks(runs: list[Run], labels: list[str], table: pd.DataFrame,
                   figure: Figure | None, selection: str) -> list:
    """The history document: provenance per run, then each chosen cell's median across runs."""
    blocks = [Heading(1, f"xent-bench history: {n_cells(len(table))} across {len(runs)} runs"),
              Para(f"Runs in the order given ({', '.join(labels)}); cells: {selection}. Each "
                   "entry: median ms (% of limit); the plot adds the interquartile range of the "
                   "rounds."),
              Heading(2, "Runs"), runs_table(runs, labels), Heading(2, "Cells")]
    rows, marks = [], []
    for r in table.to_dict("records"):
        row, mark = {"impl": r["impl"], "case": _case(r)}, {}
        for label in labels:
            state = r[f"state@{label}"]
            if state in compare_stats.DID_NOT_RUN:
                row[label], mark[label] = state, "bad"
            elif is_missing(r[f"median_s@{label}"]):
                row[label] = MISSING
            else:
                pct = r[f"pct_of_limit@{label}"]
                row[label] = _ms(r[f"median_s@{label}"]) + (
                    "" if is_missing(pct) else f" ({fmt_num(pct, 2)}%)")
        rows.append(row)
        marks.append(mark)
    blocks.append(make_table(rows, marks, left=2) if rows else Para("No run has a matching cell."))
    if figure is not None:
        blocks += [Heading(2, "Trend"), figure]
    return blocks


def history_figure(table: pd.DataFrame, labels: list[str], out_dir: Path) -> Figure | None:
    """Median ms (with q1-q3 bars) and % of limit of each chosen cell across the runs."""
    long = []
    for r in table.head(MAX_TREND_LINES).to_dict("records"):
        for label in labels:
            long.append({"series": _cell_label(r), "run": label,
                         "median_ms": r[f"median_s@{label}"] * 1e3,
                         "median_ms_lo": r[f"q1_s@{label}"] * 1e3,
                         "median_ms_hi": r[f"q3_s@{label}"] * 1e3,
                         "pct_of_limit": r[f"pct_of_limit@{label}"]})
    path = plots.trend(pd.DataFrame(long), runs=labels,
                       panels=[("median_ms", "median ms (bars: q1-q3)"),
                               ("pct_of_limit", "% of limit")],
                       path=out_dir / "plots" / "history.png", title="History of chosen cells")
    if path is None:
        return None
    more = len(table) - MAX_TREND_LINES
    note = f" (the first {MAX_TREND_LINES}; {more} more in the table)" if more > 0 else ""
    return Figure(path, f"Median time and % of limit across the runs{note}")


def write_history(runs: list[Run], table: pd.DataFrame, out_dir: Path, *, impls=None,
                  sizes=None, dtypes=None, passes=None) -> dict:
    """Write history.md / .html / .csv and plots/history.png for the chosen cells (``table``:
    ``compare.history_table`` of the same runs and selection)."""
    out_dir = Path(out_dir)
    labels = compare.run_labels(len(runs))
    parts = [("impl", impls), ("size", [fmt_size(n, c) for n, c in sizes or ()]),
             ("dtype", dtypes), ("pass", passes)]
    selection = "; ".join(f"{k} {', '.join(v)}" for k, v in parts if v) or "all"
    figure = history_figure(table, labels, out_dir)
    blocks = history_blocks(runs, labels, table, figure, selection)
    paths = _write(blocks, out_dir, "history", f"xent-bench history: {len(runs)} runs", table)
    paths["plots"] = [figure.path] if figure else []
    return paths
