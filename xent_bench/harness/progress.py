"""Progress of a run on standard error: a tqdm bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time


class Progress:
    """Progress over cells: a tqdm bar on a terminal; elsewhere (CI logs, pipes) one line per
    cell at most every ``PLAIN_EVERY_S`` seconds, with the elapsed time and an estimate of the
    time left."""

    PLAIN_EVERY_S = 10.0

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        self.enabled = enabled
        self.total, self.done, self.initial = total, initial, initial
        self.started = time.monotonic()
        self.last_line = 0.0
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="cell", dynamic_ncols=True,
                                file=sys.stderr)
            except ImportError:
                pass

    def start(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(label[:70])
            return
        now = time.monotonic()
        if self.enabled and now - self.last_line >= self.PLAIN_EVERY_S:
            self.last_line = now
            elapsed = now - self.started
            measured = self.done - self.initial
            left = (f", about {elapsed / measured * (self.total - self.done):.0f} s left"
                    if measured else "")
            # The cell being started; interleaved cells are counted when the next is set up, so
            # the last case's blocks come after the count reached the total.
            current = min(self.done + 1, self.total)
            print(f"[{current}/{self.total}] {label} ({elapsed:.0f} s{left})",
                  file=sys.stderr, flush=True)

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
