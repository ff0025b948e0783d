"""The report of ``xent-bench stability``: the figures of ``analysis.stability`` and what
``compare`` says of the quiet pair and of the deliberately slowed run, against their targets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from xent_bench.analysis import compare, stability
from xent_bench.analysis.run import Run, load_run
from xent_bench.harness import files
from xent_bench.reports.document import Bullets, Heading, Para, make_table, render_markdown
from xent_bench.reports.format import fmt_ratio

TARGETS = {"rerun": 0.90, "ratio": 0.95}


@dataclasses.dataclass
class Summary:
    runs: dict[str, Run]
    rerun: stability.Agreement
    shifted: stability.Agreement
    shifts: tuple[float, float]  # the smallest and largest common shift between the quiet runs
    ratio: stability.Agreement
    loaded: stability.LoadedCheck
    over_limit: dict[str, list[str]]
    memory: stability.Agreement
    quiet_regressions: int
    slowed_impl: str
    slowed_factor: float
    slowed_verdicts: list[str]
    slowed_exit: int

    @property
    def checks(self) -> list[tuple[str, str, bool | None]]:
        """(what, measured, target met) for every target (None: a figure without a target)."""
        def share(a: stability.Agreement) -> str:
            return f"{a.agree} of {a.total} ({100 * a.share:.0f}%), worst {fmt_ratio(a.worst)}"

        return [
            ("quiet reruns: cells within 10%", share(self.rerun),
             self.rerun.total > 0 and self.rerun.share >= TARGETS["rerun"]),
            ("quiet reruns: the machine's change of speed between them (common shift of the "
             "cells measured side by side)", _shift_range(self.shifts), None),
            ("quiet reruns: cells within 10% once that shift is taken out (as compare judges)",
             share(self.shifted),
             self.shifted.total > 0 and self.shifted.share >= TARGETS["rerun"]),
            ("quiet reruns: speedups vs native within 5%", share(self.ratio),
             self.ratio.total == 0 or self.ratio.share >= TARGETS["ratio"]),
            ("loaded run: silently wrong cells (off > 25%, not flagged contended)",
             f"{len(self.loaded.silent)} of {self.loaded.total} ({self.loaded.within} within "
             f"25%, {self.loaded.contended} off and flagged; {self.loaded.flagged} flagged "
             "contended in all)", not self.loaded.silent),
            ("cells above 100% of the limit (quiet, loaded, quiet)",
             str(sum(len(v) for v in self.over_limit.values())),
             not any(self.over_limit.values())),
            ("peak memory the same across runs (5% or 1 MiB)", share(self.memory),
             self.memory.total > 0 and self.memory.agree == self.memory.total),
            ("compare quiet vs quiet: regressions", str(self.quiet_regressions),
             self.quiet_regressions == 0),
            (f"compare quiet vs slowed ({self.slowed_impl} x{self.slowed_factor:g})",
             f"{', '.join(self.slowed_verdicts) or 'no cell'}; exit status {self.slowed_exit}",
             bool(self.slowed_verdicts) and all(v == "slower" for v in self.slowed_verdicts)
             and self.slowed_exit == 1),
        ]

    @property
    def targets_met(self) -> bool:
        return all(ok is not False for _, _, ok in self.checks)


def _shift_range(shifts: tuple[float, float]) -> str:
    lo, hi = shifts
    if lo != lo:  # NaN: no group
        return f"no group of {compare.MIN_SHIFT_CELLS} or more cells"
    return fmt_ratio(lo) if lo == hi else f"{fmt_ratio(lo)} to {fmt_ratio(hi)}"


def summarise(quiet: Path, loaded: Path, quiet_again: Path, slowed: Path, slowed_impl: str,
              factor: float) -> Summary:
    runs = {"quiet": load_run(quiet), "loaded": load_run(loaded),
            "quiet again": load_run(quiet_again), "slowed": load_run(slowed)}
    quiet_pair = compare.compare_runs(quiet, quiet_again)
    with_slow = compare.compare_runs(quiet, slowed)
    table = with_slow.table
    verdicts = list(table.loc[table["impl"] == slowed_impl, "speed"]) if len(table) else []
    return Summary(
        runs=runs,
        rerun=stability.rerun_agreement(runs["quiet"], runs["quiet again"]),
        shifted=stability.shifted_agreement(quiet_pair.table),
        shifts=_shifts(quiet_pair),
        ratio=stability.ratio_agreement(runs["quiet"], runs["quiet again"]),
        loaded=stability.loaded_check(runs["quiet"], runs["loaded"]),
        over_limit={name: stability.over_limit(run) for name, run in runs.items()
                    if name != "slowed"},
        memory=stability.memory_agreement([runs["quiet"], runs["loaded"],
                                           runs["quiet again"]]),
        quiet_regressions=len(quiet_pair.regressions(("slower", "memory"))),
        slowed_impl=slowed_impl, slowed_factor=factor, slowed_verdicts=verdicts,
        slowed_exit=1 if len(with_slow.regressions(("slower",))) else 0,
    )


def _shifts(cmp: compare.Comparison) -> tuple[float, float]:
    groups = compare.shift_table(cmp.table)
    if groups.empty:
        return float("nan"), float("nan")
    return float(groups["shift"].min()), float(groups["shift"].max())


def blocks(summary: Summary) -> list:
    rows = [{"check": what, "measured": measured,
             "target met": "-" if ok is None else "yes" if ok else "**no**"}
            for what, measured, ok in summary.checks]
    out = [Heading(1, "xent-bench stability"),
           Para("One preset measured quiet, with one core kept busy by a spinning process, "
                "quiet again, and with one implementation slowed down on purpose."),
           make_table(rows, left=2),
           Heading(2, "Runs"),
           Bullets([f"{name}: `{run.run_dir}` ({run.meta.get('threads_rule')})"
                    for name, run in summary.runs.items()])]
    details = summary.loaded.silent + [c for cells in summary.over_limit.values() for c in cells]
    if details:
        out += [Heading(2, "Cells that missed a target"), Bullets(details)]
    return out


def write(summary: Summary, out_dir: Path) -> Path:
    files.check_output_dir(out_dir)
    path = out_dir / "stability.md"
    files.write_text(path, render_markdown(blocks(summary)))
    return path
