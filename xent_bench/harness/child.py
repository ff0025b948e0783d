"""The start of every worker process: ``python -m xent_bench.harness.child MODULE ARGS...``.

Before the worker module is imported (so before any framework starts a thread), this

- pins the process to the CPUs in ``XENT_CPUS`` (``threads.pick_cpus``), so every thread the
  framework ever starts inherits the affinity;
- asks the kernel to kill it when the runner dies (``PR_SET_PDEATHSIG``; Linux), so a killed
  run leaves no worker behind to append records while a resume measures the same cells
  again; if the runner (``XENT_PARENT_PID``) is already gone, it exits at once;

then runs ``MODULE`` as ``__main__`` with ``ARGS``. Doing this in the child instead of in a
``preexec_fn`` keeps the launcher from forking a multi-threaded process in Python (unsafe, and
refused with a warning when JAX is loaded there), and imports nothing heavy: only the standard
library.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

CPUS_ENV = "XENT_CPUS"
PARENT_ENV = "XENT_PARENT_PID"
PR_SET_PDEATHSIG = 1


def pin_from_env() -> None:
    cpus = os.environ.get(CPUS_ENV, "")
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])


def die_with_parent() -> None:
    parent = os.environ.get(PARENT_ENV, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # the runner died before the signal was armed
        os._exit(1)


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m xent_bench.harness.child MODULE [ARGS...]")
    pin_from_env()
    die_with_parent()
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
