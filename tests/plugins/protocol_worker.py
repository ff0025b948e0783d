"""A stand-in worker for the launch tests: ``python -m protocol_worker TASK.json`` follows the
task's ``script``, a list of steps: ``["start", i]``, ``["finished"]``, ``["ceilings", {...}]``,
``["cell_error", status, message]``, ``["print", text]``, ``["sleep", seconds]``,
``["exit", status]``, ``["signal", name]``."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from xent_bench.harness import protocol


def main() -> int:
    task = json.loads(Path(sys.argv[1]).read_text())
    for step in task["script"]:
        action, *args = step
        if action == "start":
            protocol.send_start(args[0])
        elif action == "finished":
            protocol.send_finished()
        elif action == "ceilings":
            protocol.send_ceilings(args[0])
        elif action == "cell_error":
            protocol.send_cell_error(*args)
        elif action == "print":
            print(args[0], flush=True)
        elif action == "sleep":
            time.sleep(args[0])
        elif action == "exit":
            sys.stdout.flush()
            os._exit(args[0])
        elif action == "signal":
            sys.stdout.flush()
            os.kill(os.getpid(), getattr(signal, args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
