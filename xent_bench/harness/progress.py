"""Progress of a run on standard error: a tqdm bar on a terminal, plain lines elsewhere.

**What is counted.** A run's steps are its cells *and* its launches' start-ups. Before its
first cell a worker process imports its framework and, for timing cells, measures the
machine's ceilings (several seconds per framework); that is work the run has to do as much as
a cell, so the total is ``cells + start-ups``. The caller says how many launches it plans
(:meth:`Progress.expect_startups`); a launch beyond those (a fresh one after a crash) adds its
start-up to the total when it begins. A start-up is counted when its launch's first cell
starts, or when the launch ends before that; a cell when the launch watcher counts it
(``launch.watch``). The bar shows steps, with the cells in its postfix; the plain lines show
cells and start-ups apart. While a start-up runs, the bar's description and the plain line
say so (``torch: starting, measuring ceilings on cpu``).

**The estimate.** A start-up and a cell take very different times, so each has its own rate,
taken from this run only (cells recorded before a resume were not timed here):

- seconds per cell = time in cells up to the last counted cell / cells counted so far, where
  *time in cells* is the time launches spent after their start-up (neither the start-ups nor
  the gaps between launches are in it);
- seconds per start-up = the mean of the start-ups finished so far;
- time left = max(0, seconds per cell x cells left - time in cells since the last count)
  + seconds per start-up x start-ups not begun
  + max(0, seconds per start-up - time in the start-up under way), if one is.

Until ``ESTIMATE_AFTER_CELLS`` cells are counted, or while start-ups remain and none has
finished, the estimate reads "estimating": one fast cell after a long start-up says nothing
about the rest. tqdm's own rate and time left are not shown (extrapolating from its first
update, it took the start-up for the first cell's time: minutes "left" with seconds to go).

**Plain lines** (no tqdm, or standard error not a terminal: CI logs, pipes): always one when a
launch's start-up begins and when its first cell starts; otherwise at most one every
``PLAIN_EVERY_S`` seconds, at a cell's start or from :meth:`tick`, which the watcher calls
each time it polls; and a last one at :meth:`close`. Lines only at cell starts were not
enough: the ceilings send no message for seconds, and interleaved cases announce their cells
in bursts (every set-up, then the blocks in silence, then every finish), so a short run could
print a single line.
"""

from __future__ import annotations

import sys
import time


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour."""
    minutes, secs = divmod(int(round(max(0.0, seconds))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress over a run's cells and its launches' start-ups (see the module docstring):
    a tqdm bar on a terminal; elsewhere plain lines."""

    PLAIN_EVERY_S = 10.0
    ESTIMATE_AFTER_CELLS = 3
    REFRESH_S = 1.0  # the bar's elapsed time and estimate, redrawn from tick() this often
    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} steps [{elapsed}{postfix}]"

    def __init__(self, total: int, initial: int, enabled: bool):
        """``total`` cells, ``initial`` of them recorded already (a resumed run)."""
        now = time.monotonic()
        self.bar = None
        self.enabled = enabled
        self.total, self.done, self.initial = total, initial, initial  # cells
        self.startups_expected = self.startups_begun = self.startups_done = 0
        self.startup_s = 0.0  # the finished start-ups, together
        # "idle" (before the first cell or start-up, between launches), "startup" or "cells";
        # each phase's clock runs from phase_since.
        self.phase, self.phase_since = "idle", now
        self.cell_s = 0.0  # time in cells, phases ended
        self.cell_s_at_count = 0.0  # time in cells when the last cell was counted
        self.label = ""
        self.first_cell_due = False  # the launch's first cell always gets a plain line
        self.started = now
        self.last_line: float | None = None
        self.last_refresh = now
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True,
                                file=sys.stderr, bar_format=self.BAR_FORMAT)
            except ImportError:
                pass
            else:
                self._draw()

    # ---------------------------------------------------------------------------- events

    def expect_startups(self, count: int) -> None:
        """``count`` more launches are planned; their start-ups join the total."""
        self.startups_expected += count
        self._draw()

    def startup(self, label: str) -> None:
        """A launch begins its start-up (imports, ceilings): ``label`` says what it does."""
        now = time.monotonic()
        self._enter("startup", now)
        self.startups_begun += 1
        self.startups_expected = max(self.startups_expected, self.startups_begun)
        self.label, self.first_cell_due = label, True
        self._show(now, force=True)

    def start(self, label: str) -> None:
        """A cell begins (it ends the launch's start-up, if that is still under way)."""
        now = time.monotonic()
        if self.phase != "cells":
            self._enter("cells", now)
        self.label = label
        self._show(now, force=self.first_cell_due)
        self.first_cell_due = False

    def advance(self) -> None:
        """A cell is done (measured, or recorded as an error)."""
        now = time.monotonic()
        self.done = min(self.done + 1, self.total)
        self.cell_s_at_count = self._cell_time(now)
        self._draw(now)

    def end_launch(self) -> None:
        """A launch has ended: a start-up still under way is over too."""
        self._enter("idle", time.monotonic())
        self._draw()

    def tick(self) -> None:
        """Called between messages: a plain line when one is due, a bar redrawn now and then
        (so its elapsed time and estimate move during a long start-up or cell)."""
        now = time.monotonic()
        if self.bar is not None:
            if now - self.last_refresh >= self.REFRESH_S:
                self._draw(now)
        else:
            self._show(now)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """The end of the run (or of its progress, if it was stopped): a last plain line, so a
        log says how far it got and in what time."""
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.last_line is not None:
            now = time.monotonic()
            how = "done" if self.done >= self.total else "stopped"
            print(f"[{self.counts()}] {how} after {clock(now - self.started)}", file=sys.stderr,
                  flush=True)

    # ---------------------------------------------------------------------------- the estimate

    def left_s(self, now: float | None = None) -> float | None:
        """Seconds left by the rule of the module docstring; None while it would mean
        nothing."""
        now = time.monotonic() if now is None else now
        measured = self.done - self.initial
        if measured < self.ESTIMATE_AFTER_CELLS:
            return None
        per_cell = self.cell_s_at_count / measured
        running = self._cell_time(now) - self.cell_s_at_count
        left = max(0.0, per_cell * (self.total - self.done) - running)
        not_begun = self.startups_expected - self.startups_begun
        in_startup = self.phase == "startup"
        if not_begun or in_startup:
            if not self.startups_done:
                return None
            per_startup = self.startup_s / self.startups_done
            left += per_startup * not_begun
            if in_startup:
                left += max(0.0, per_startup - (now - self.phase_since))
        return left

    def estimate(self, now: float | None = None) -> str:
        left = self.left_s(now)
        return "estimating" if left is None else f"about {clock(left)} left"

    def counts(self) -> str:
        return (f"{self.done}/{self.total} cells, "
                f"{self.startups_done}/{self.startups_expected} start-ups")

    # ---------------------------------------------------------------------------- internals

    def _cell_time(self, now: float) -> float:
        return self.cell_s + (now - self.phase_since if self.phase == "cells" else 0.0)

    def _enter(self, phase: str, now: float) -> None:
        if self.phase == "startup":
            self.startups_done += 1
            self.startup_s += now - self.phase_since
        elif self.phase == "cells":
            self.cell_s += now - self.phase_since
        self.phase, self.phase_since = phase, now

    def _show(self, now: float, force: bool = False) -> None:
        if self.bar is not None:
            self._draw(now)
            return
        if not self.enabled:
            return
        if not force and self.last_line is not None and (
                now - self.last_line < self.PLAIN_EVERY_S):
            return
        self.last_line = now
        print(f"[{self.counts()}] {self.label} ({clock(now - self.started)} elapsed, "
              f"{self.estimate(now)})", file=sys.stderr, flush=True)

    def _draw(self, now: float | None = None) -> None:
        if self.bar is None:
            return
        now = time.monotonic() if now is None else now
        self.last_refresh = now
        self.bar.total = self.total + self.startups_expected
        self.bar.n = self.done + self.startups_done
        self.bar.set_description_str(self.label[:70], refresh=False)
        self.bar.set_postfix_str(f"{self.done}/{self.total} cells, {self.estimate(now)}",
                                 refresh=False)
        self.bar.refresh()
