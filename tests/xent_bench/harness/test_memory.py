"""The steady-state peak-memory probe, on a fake resident-size source."""

from __future__ import annotations

from xent_bench.harness import memory

MIB = 2**20


class FakeProcess:
    """A process whose resident size is ``base`` and whose calls raise its high-water mark by
    the next of ``rises`` (then drop back: the output is released)."""

    def __init__(self, base: int, rises: list[int]):
        self.base, self.rises, self.hwm = base, list(rises), base
        self.resets = self.trims = 0

    def call(self):
        self.hwm = max(self.hwm, self.base + self.rises.pop(0))

    def reset(self):
        self.resets += 1
        self.hwm = self.base
        return True

    def trim(self, collect=True):
        self.trims += 1
        self.collects = getattr(self, "collects", 0) + bool(collect)
        return True


def _patch(monkeypatch, proc: FakeProcess):
    monkeypatch.setattr(memory, "rss_bytes", lambda: proc.base)
    monkeypatch.setattr(memory, "peak_rss_bytes", lambda: proc.hwm)
    monkeypatch.setattr(memory, "reset_peak_rss", proc.reset)
    monkeypatch.setattr(memory, "release_free_memory", proc.trim)


def test_the_peak_is_the_largest_trial_each_from_a_clean_baseline(monkeypatch):
    # The second trial's buffer landed in pages kept resident: it under-counts.
    proc = FakeProcess(100 * MIB, [4 * MIB, 0, 4 * MIB])
    _patch(monkeypatch, proc)
    assert memory.steady_peak_bytes(proc.call, trials=3) == 4 * MIB
    assert proc.resets == 3 and proc.trims == 3
    assert proc.collects == 1  # one garbage collection per cell, then free pages only


def test_no_peak_where_the_source_is_missing(monkeypatch):
    proc = FakeProcess(0, [MIB])
    _patch(monkeypatch, proc)
    monkeypatch.setattr(memory, "rss_bytes", lambda: None)
    assert memory.steady_peak_bytes(proc.call) is None
