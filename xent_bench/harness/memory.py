"""Peak-memory probes.

CPU: the worker's resident memory from ``/proc/self/status``. Writing ``5`` to
``/proc/self/clear_refs`` resets the kernel's high-water mark (``VmHWM``) to the current resident
size, so a peak can be taken over any stretch of code. On an accelerator the framework's own
allocator statistics are used instead (see each backend's ``peak_memory``).

The steady-state peak of a cell is measured in rounds of its own, after the timed rounds
(:func:`steady_peak_bytes`), from a clean baseline, so the figure does not depend on which
cells ran before in the same process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    """Current resident memory of this process, or None where /proc is unavailable."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset the resident high-water mark to the current resident size (Linux only)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int | None:
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_free_memory(collect: bool = True) -> bool:
    """Collect garbage and hand the allocator's free pages back to the OS (glibc
    ``malloc_trim(0)``), so that the next peak starts from memory that is really in use:
    otherwise a buffer may land in pages an earlier cell left resident (no rise of the
    resident size, a peak of 0) or in fresh pages (the full size), depending on what ran
    before. ``collect=False`` skips the garbage collection (outputs released by reference
    count need none). Returns False where ``malloc_trim`` does not exist."""
    if collect:
        gc.collect()
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


def steady_peak_bytes(call, trials: int = 3) -> float | None:
    """Peak resident memory above a clean baseline of one steady-state call of ``call``, the
    largest over ``trials`` trials, or None where /proc is missing. Each trial starts from a
    clean baseline (inputs resident, outputs released, garbage collected, free pages returned)
    and resets the high-water mark. The largest, because a trial can only under-count: a buffer
    that lands in pages the allocator kept resident (a thread's arena that ``malloc_trim`` could
    not shrink) does not raise the resident size, while nothing else in the worker allocates
    during the call."""
    peaks = []
    for trial in range(trials):
        # One garbage collection for the cell; the later trials' outputs are freed by reference
        # count, so handing free pages back is enough.
        release_free_memory(collect=trial == 0)
        base = rss_bytes()
        if base is None or not reset_peak_rss():
            return None
        call()
        peak = peak_rss_bytes()
        if peak is None:
            return None
        peaks.append(max(peak - base, 0))
    return float(max(peaks))


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the out-of-memory errors that frameworks raise (not for a killed process)."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    text = str(exc).lower()
    return (
        "outofmemory" in name.lower()
        or name == "ResourceExhaustedError"
        or "out of memory" in text
        or "resource_exhausted" in text
        or "failed to allocate" in text
    )
