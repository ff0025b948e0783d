"""The run loop shared by every kind of run: cells grouped into launches, a record per cell,
nothing measured twice, nothing lost when a launch dies.

``run_groups`` measures the cells of ``cells`` that have no record in the run folder yet
(so an interrupted run resumes where it stopped). Cells are grouped (by framework for the
framework workers; by framework and world size for vocabulary-parallel ranks) and each group
is handed to ``launch_group``, one launch at a time, never side by side. A launch that fails
reports which cell it was in: that cell becomes an error record (built by ``error_record``)
and a fresh launch takes the group's remaining cells; a launch that fails before its first
cell (an import error, a bad device) fails every cell of the group left without a record.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

from xent_bench.harness.cells import cell_key, describe
from xent_bench.harness.progress import Progress
from xent_bench.harness.records import (
    CANNOT_WRITE,
    Record,
    RecordWriteError,
    append_record,
    finished_keys,
    load_records,
    repair_tail,
)


@dataclasses.dataclass(frozen=True)
class Failure:
    """A launch that did not finish its cells: the index (in the cells it was given) of the
    cell it failed in, or None before its first cell; the status and the one-line message of
    the error records it leaves."""

    index: int | None
    status: str
    message: str


# launch_group(group key, the group's cells without a record, attempt number, progress)
LaunchGroup = Callable[[Hashable, list[dict], int, Progress], Failure | None]


def pending(cells: list[dict], run_dir: Path) -> list[dict]:
    """The cells of ``cells`` without a record in ``run_dir``."""
    done = finished_keys(load_records(run_dir))
    return [c for c in cells if cell_key(c) not in done]


def run_groups(run_dir: Path, cells: list[dict], *, group_of: Callable[[dict], Hashable],
               label_of: Callable[[Hashable], str], launch_group: LaunchGroup,
               error_record: Callable[[dict, Failure], Record], progress: Progress) -> None:
    """Measure every cell of ``cells`` that has no record yet (see the module docstring).
    ``progress`` counts cells (it should start at the number already recorded) and the
    launches' start-ups: one per group is expected; a fresh launch adds its own."""
    groups: OrderedDict[Hashable, list[dict]] = OrderedDict()
    for cell in pending(cells, run_dir):
        groups.setdefault(group_of(cell), []).append(cell)
    progress.expect_startups(len(groups))
    for key, remaining in groups.items():
        attempt = 0
        while remaining:
            attempt += 1
            failure = launch_group(key, remaining, attempt, progress)
            if failure is None:
                break
            if failure.status == CANNOT_WRITE:  # no fresh worker could write either
                raise RecordWriteError(failure.message)
            # Cells the launch finished are on disk; the one it died in becomes an error.
            on_disk = finished_keys(load_records(run_dir))
            if failure.index is None:
                progress.note(f"{label_of(key)}: {failure.message}; its {len(remaining)} cells "
                              f"are recorded as errors")
                failed = [c for c in remaining if cell_key(c) not in on_disk]
            else:
                died = remaining[failure.index]
                progress.note(f"{label_of(key)}: {failure.message} during {describe(died)}")
                failed = [died] if cell_key(died) not in on_disk else []
            for cell in failed:
                append_record(run_dir, error_record(cell, failure))
                progress.advance()
            remaining = pending(remaining, run_dir)


def repair(run_dir: Path) -> None:
    """Prepare a run folder's record file for appending (a cut-off last line is noted)."""
    if repair_tail(run_dir):
        print(f"note: {run_dir}/records.jsonl ended in a cut-off line; it is skipped",
              file=sys.stderr)
