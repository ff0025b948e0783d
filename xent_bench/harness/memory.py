"""Peak-memory probes.

CPU: the worker's resident memory from ``/proc/self/status``. Writing ``5`` to
``/proc/self/clear_refs`` resets the kernel's high-water mark (``VmHWM``) to the current resident
size, so a peak can be taken over any stretch of code. On an accelerator the framework's own
allocator statistics are used instead (see each backend's ``peak_memory``).
"""

from __future__ import annotations

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
