"""Comparing runs: noise-aware verdicts on speed, memory and accuracy.

This module holds the rules: thresholds, the bootstrap interval and the verdicts, on NumPy
arrays and plain dicts (no pandas, so the command line can show the defaults on the base
install). The tables of two runs are matched in ``xent_bench.analysis.compare``; the rendering
lives in ``xent_bench.reports.compare_report``. Cells are matched by ``cells.cell_key``
(implementation, case, pass, device, kind), so two runs of the same grid on different commits
or machines line up; a cell present in only one run is listed, never dropped.

Speed (timing cells). ``ratio`` = median(new rounds) / median(base rounds), from the raw round
times of each record (``raw["times_s"]``). Its interval ``[lo, hi]`` is a percentile bootstrap
(``RESAMPLES`` resamples of each run's rounds with replacement, seeded, ``CONFIDENCE`` level):
it covers the round-to-round noise *inside* each run. Between runs the machine itself changes
(neighbours, cache and frequency state, where the processes' memory landed), which the rounds of
one run cannot show, so a claim of change must also clear a run-to-run *drift allowance* ``D``.
With the threshold ``t`` (the smallest change that matters), the band is
``B = 1 + max(t, D)``:

- ``slower``    lo > B
- ``faster``    hi < 1 / B
- ``same``      1 / B <= lo and hi <= B (no change this machine can tell from its reruns)
- ``too noisy`` anything else: the interval crosses the band's edge, the runs cannot tell.

The ratio judged is the cell's ratio over the *common shift* of the cells measured beside it
(the same worker and pass: ``xent_bench.analysis.compare.common_shifts``), where that group moved
together: the machine's own change of speed between the runs, which every cell of a worker
shares, is taken out before the band is applied. ``shift="none"`` judges the raw ratio.

``D = 0`` gives the plain rule (the band is the threshold). The threshold and the drift are not
multiplied: the drift already is the change that reruns of unchanged code show, so a change
beyond it is a change. The default ``DEFAULT_DRIFT = 0.3`` is calibrated from reruns of
unchanged code on this project's 2-core VM, measured by ``xent-bench stability`` with the
harness's stall filter, neighbour meter, thread rule and pinning, interleaving and repeats:
once each group's common shift was taken out, quiet reruns of one commit differed by at most
1.18x, 1.32x and 1.20x (20 cells each; runs 20261201-212402 / -212520, 20261201-213135 /
-213301 and 20261201-214001 / -214124), and ``compare`` called none of them slower. So on this
machine a change must exceed 1.3x to be called, and a 1.5x regression of one implementation
is. Calibrate it on another machine the same way: run ``xent-bench stability`` and set
``--drift`` a little above the worst ratio with the shift taken out, minus 1.

Memory (``peak_extra_bytes``, one number per cell): ``more`` when the new peak exceeds the old
by more than both ``memory_threshold`` (relative to the smaller peak) and ``memory_floor_bytes``;
``less`` symmetrically; otherwise ``same`` (``n/a`` when a run has no peak). The floor (default
8 MiB) is there because the CPU probe reads the process's peak resident size, which moved by up
to 5.8 MiB between reruns of unchanged code at 256 x 1000 here (allocator arenas, pages).

Accuracy (every cell with agreement metrics, timing cells included, which check their own
output): ``worse`` when the cell's state got more severe (pass -> fail, pass -> nonfinite,
ok -> error, ...: ``agreement.SEVERITY``) or, in the same failing state, an error grew by more
than the dtype's tolerance (``TOLERANCE_EPS``); ``better`` the other way round; ``same``
otherwise; ``n/a`` when a run did not check the cell.

A *regression* is ``slower``, ``more`` memory or ``worse`` accuracy, in the categories chosen
with ``fail_on``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from xent_bench.harness.agreement import SEVERITY, TOLERANCE_EPS
from xent_impls.vocabulary import STATUSES

DEFAULT_THRESHOLD = 0.10
DEFAULT_DRIFT = 0.3
# How a cell's ratio is judged: over the common shift of the cells measured beside it
# ("group", xent_bench.analysis.compare.common_shifts) or as it is ("none").
SHIFTS = ("group", "none")
DEFAULT_SHIFT = "group"
DEFAULT_MEMORY_THRESHOLD = 0.25
DEFAULT_MEMORY_FLOOR_BYTES = 8 * 2.0**20
CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0
# Resampled values held in memory at once (bootstrap in chunks for cells with many rounds).
CHUNK_VALUES = 2_000_000

SPEED_VERDICTS = ("slower", "too noisy", "faster", "same", "n/a")
MEMORY_VERDICTS = ("more", "less", "same", "n/a")
ACCURACY_VERDICTS = ("worse", "better", "same", "n/a")
# --fail-on categories and the verdict of each that counts as a regression.
REGRESSION = {"slower": ("speed", "slower"), "memory": ("memory", "more"),
              "accuracy": ("accuracy", "worse")}
# The statuses of a cell that did not run (error, oom).
DID_NOT_RUN = tuple(s for s in STATUSES if s != "ok")


@dataclasses.dataclass(frozen=True)
class Options:
    """Thresholds and bootstrap settings of a comparison (see the module docstring)."""

    threshold: float = DEFAULT_THRESHOLD
    drift: float = DEFAULT_DRIFT
    memory_threshold: float = DEFAULT_MEMORY_THRESHOLD
    memory_floor_bytes: float = DEFAULT_MEMORY_FLOOR_BYTES
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    seed: int = SEED
    shift: str = DEFAULT_SHIFT

    def __post_init__(self):
        if self.shift not in SHIFTS:
            raise ValueError(f"shift must be one of {', '.join(SHIFTS)}, got {self.shift!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1 (a fraction such as 0.10), "
                             f"got {self.threshold:g}")
        for name in ("drift", "memory_threshold", "memory_floor_bytes"):
            value = getattr(self, name)
            # not (value >= 0) also catches NaN, which would turn every verdict "too noisy".
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name.replace('_', ' ')} must be a finite number of at least "
                                 f"0, got {value:g}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence:g}")

    @property
    def slower_above(self) -> float:
        """The band ``B``: the interval's lower bound must exceed it for ``slower``."""
        return band(self.threshold, self.drift)

    @property
    def faster_below(self) -> float:
        """``1 / B``: the interval's upper bound must stay under it for ``faster``."""
        return 1 / band(self.threshold, self.drift)


# --------------------------------------------------------------------------------------------
# Statistics


def bootstrap_medians(times, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``resamples`` resamples (with replacement, same size) of ``times``."""
    t = np.asarray(times, dtype=float)
    out = np.empty(resamples)
    chunk = max(1, CHUNK_VALUES // max(t.size, 1))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        out[start:stop] = np.median(t[rng.integers(0, t.size, size=(stop - start, t.size))],
                                    axis=1)
    return out


def ratio_interval(base_times, new_times, *, confidence: float = CONFIDENCE,
                   resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float, float]:
    """``(ratio, lo, hi)``: median(new) / median(base) and its percentile-bootstrap interval.

    Each run's rounds are resampled independently; ``lo``/``hi`` are NaN when either run has
    fewer than two rounds (no spread to resample), ``ratio`` too when either has none.
    """
    base = np.asarray(base_times, dtype=float)
    new = np.asarray(new_times, dtype=float)
    if base.size == 0 or new.size == 0 or np.median(base) <= 0:
        return math.nan, math.nan, math.nan
    ratio = float(np.median(new) / np.median(base))
    if base.size < 2 or new.size < 2:
        return ratio, math.nan, math.nan
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(new, resamples, rng) / bootstrap_medians(base, resamples, rng)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(ratios, [tail, 1 - tail])
    return ratio, float(lo), float(hi)


def band(threshold: float = DEFAULT_THRESHOLD, drift: float = DEFAULT_DRIFT) -> float:
    """``B = 1 + max(threshold, drift)``: the ratio a change must clear (module docstring)."""
    return 1 + max(threshold, drift)


def speed_verdict(lo: float, hi: float, threshold: float = DEFAULT_THRESHOLD,
                  drift: float = DEFAULT_DRIFT) -> str:
    """``slower``, ``faster``, ``same`` or ``too noisy`` for a ratio interval (module docstring);
    ``too noisy`` when there is no interval (fewer than two rounds in a run)."""
    if math.isnan(lo) or math.isnan(hi):
        return "too noisy"
    b = band(threshold, drift)
    if lo > b:
        return "slower"
    if hi < 1 / b:
        return "faster"
    if 1 / b <= lo and hi <= b:
        return "same"
    return "too noisy"


def memory_verdict(base: float, new: float, threshold: float = DEFAULT_MEMORY_THRESHOLD,
                   floor_bytes: float = DEFAULT_MEMORY_FLOOR_BYTES) -> str:
    """``more``, ``less`` or ``same`` peak memory; ``n/a`` when either peak is missing.

    A change counts only when it exceeds both ``floor_bytes`` and ``threshold`` times the
    smaller of the two peaks."""
    if is_missing(base) or is_missing(new):
        return "n/a"
    change = new - base
    if abs(change) <= max(floor_bytes, threshold * min(base, new)):
        return "same"
    return "more" if change > 0 else "less"


def accuracy_verdict(base: dict, new: dict) -> tuple[str, str]:
    """``(verdict, note)`` of one cell's accuracy: ``worse``, ``better``, ``same`` or ``n/a``.

    ``base`` and ``new`` hold the cell's ``state`` (``run.prepare_cells``: its agreement
    verdict, or its status when it did not run), ``dtype`` and ``loss_err_eps`` /
    ``grad_err_eps``. The note says what changed, e.g. ``pass -> nonfinite`` or
    ``fail: loss 40 -> 900 eps``.
    """
    b, n = base.get("state"), new.get("state")
    if "unchecked" in (b, n):
        # Only a switch between running and not running can be judged.
        if (b in DID_NOT_RUN) == (n in DID_NOT_RUN):
            return "n/a", ""
    if b != n:
        worse = SEVERITY.get(n, SEVERITY["error"]) > SEVERITY.get(b, SEVERITY["error"])
        return ("worse" if worse else "better"), f"{b} -> {n}"
    if b in DID_NOT_RUN or b not in ("fail", "as-native"):
        return "same", ""
    tolerance = TOLERANCE_EPS.get(new.get("dtype"), {})
    for q in ("loss", "grad"):
        old_err, new_err = base.get(f"{q}_err_eps"), new.get(f"{q}_err_eps")
        if is_missing(old_err) or is_missing(new_err) or q not in tolerance:
            continue
        if abs(new_err - old_err) > tolerance[q]:
            note = f"{b}: {q} {_fmt_eps(old_err)} -> {_fmt_eps(new_err)} eps"
            return ("worse" if new_err > old_err else "better"), note
    return "same", ""


def _fmt_eps(value: float) -> str:
    return f"{value:.3g}"


def is_missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def parse_fail_on(text: str) -> tuple[str, ...]:
    """``"slower,accuracy"`` -> ``("slower", "accuracy")``; ``"none"`` -> ``()``."""
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in REGRESSION]
    if unknown or not names:
        raise ValueError(f"unknown --fail-on category {', '.join(unknown) or repr(text)}; "
                         f"known: {', '.join(REGRESSION)}, or none")
    return names
