"""One launch of worker processes: start them, watch their protocol lines, tear them down.

A launch is one or more processes running ``python -m MODULE TASK.json`` over the same task:
one framework worker (``worker.py``), or the ranks of a vocabulary-parallel launch
(``dist_worker.py``). Every process of a launch is in one process group (the first is its
leader), so one ``killpg`` tears the launch down, children included, and each dies with the
runner (``PR_SET_PDEATHSIG``). Each process writes its standard output and error to a log of its
own, appended to the run's ``workers.log`` when the launch ends; its protocol lines come over a
pipe of their own (``protocol.py``), so nothing an implementation prints is read as protocol.

:func:`watch` follows the protocol (``protocol.py``): progress on ``START``/``FINISHED`` (the
start-up, then the cells; ``progress.py``), a deadline per cell (and one for start-up), the
captured ``CEILINGS`` and ``CELL_ERROR`` payloads. It stops when every process has exited,
when one exits with a non-zero status (the others could not finish the cell: they would wait
in a collective), or at the deadline, and returns an :class:`Outcome`; each caller words its
own error message from it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection
from pathlib import Path

from xent_bench.harness import child, protocol
from xent_bench.harness.cells import describe
from xent_bench.harness.progress import Progress
from xent_bench.harness.records import CANNOT_WRITE

WORKER_LOG = "workers.log"
CHILD_MODULE = "xent_bench.harness.child"
POLL_S = 0.2


def describe_exit(returncode: int | None) -> str:
    """How a child process ended, for error records."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


def tail(path: Path, lines: int = 3, chars: int = 400) -> str:
    """The last non-empty ``lines`` of a log, joined on one line (for error messages)."""
    try:
        text = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-chars:]


def _reader(index: int, stream, sink: queue.Queue) -> None:
    for line in stream:
        sink.put((index, line.rstrip("\n")))
    sink.put((index, None))


class Launch:
    """The processes of one launch, their output, and their teardown."""

    def __init__(self, module: str, task: dict, envs: list[dict], run_dir: Path, name: str,
                 cpus: list[int] | None = None):
        """Start one process per environment in ``envs``, running ``module`` on ``task``; with
        ``cpus``, every process pins itself to those CPUs before it imports ``module``
        (``child.py``: so every thread it ever starts inherits the affinity)."""
        self.run_dir, self.name = Path(run_dir), name
        self.task_path = self.run_dir / f".task-{name}.json"
        self.task_path.write_text(json.dumps(task))
        self.lines: queue.Queue = queue.Queue()
        self.procs: list[subprocess.Popen] = []
        self.channels: list = []  # the read end of each process's protocol pipe
        self.readers: list[threading.Thread] = []
        self.logs = [self.run_dir / f".log-{name}-p{i}.log" for i in range(len(envs))]
        self.pgid = None
        # Every process starts through harness/child.py, which pins it and ties its life to
        # this one's before the worker module (and its framework) is imported.
        command = [sys.executable, "-m", CHILD_MODULE, module, str(self.task_path)]
        child_env = {child.PARENT_ENV: str(os.getpid())}
        if cpus is not None:
            child_env[child.CPUS_ENV] = ",".join(str(c) for c in cpus)
        try:
            for i, env in enumerate(envs):
                # The protocol on a pipe of its own (protocol.CHANNEL_ENV); what the
                # implementations print goes to the log with the standard error.
                read_fd, write_fd = os.pipe()
                channel = os.fdopen(read_fd, encoding="utf-8", errors="replace")
                self.channels.append(channel)
                try:
                    with open(self.logs[i], "w") as log:
                        proc = subprocess.Popen(
                            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            env=env | child_env | {protocol.CHANNEL_ENV: str(write_fd)},
                            pass_fds=(write_fd,), process_group=self.pgid or 0)
                finally:
                    os.close(write_fd)  # the child holds its copy; EOF comes when it exits
                self.pgid = self.pgid or proc.pid
                self.procs.append(proc)
                reader = threading.Thread(target=_reader, args=(i, channel, self.lines),
                                          daemon=True)
                reader.start()
                self.readers.append(reader)
        except OSError:
            if self.procs:
                self.finish()
            for channel in self.channels:
                channel.close()
            raise

    def kill(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self) -> None:
        """Kill whatever is left, reap every process, move the logs into ``workers.log``."""
        if any(p.poll() is None for p in self.procs):
            self.kill()
        for p in self.procs:
            p.wait()
        for reader in self.readers:  # every line the processes wrote reaches the queue
            reader.join(timeout=5.0)
        for channel in self.channels:
            channel.close()
        with open(self.run_dir / WORKER_LOG, "a") as out:
            for i, path in enumerate(self.logs):
                who = "worker" if len(self.procs) == 1 else f"process {i}"
                out.write(f"\n===== {self.name} {who} ({describe_exit(self.procs[i].returncode)})"
                          f" =====\n")
                if path.exists():
                    out.write(path.read_text(errors="replace"))
                    path.unlink()
        self.task_path.unlink(missing_ok=True)


@dataclasses.dataclass
class Outcome:
    """How a launch ended.

    Attributes:
      current: index of the cell the launch was in when it ended (None: before the first cell,
        or after the last).
      codes: each process's exit status before the harness killed the launch (None: still
        running then, so killed by the harness).
      cell_errors: ``CELL_ERROR`` payloads by process index.
      timed_out: whether the deadline ended the launch.
      timeout_s: the deadline in force then (start-up or per cell).
      tails: the last lines of each process's log.
      ceilings: the ``CEILINGS`` payload, if one came.
      finished: whether a ``FINISHED`` line came. A process that exits with status 0 without
        it did not finish its cells (an implementation called ``sys.exit(0)``, say): that is a
        failure of the cell it was in, not "all done".
    """

    current: int | None
    codes: list[int | None]
    cell_errors: dict[int, dict]
    timed_out: bool
    timeout_s: float
    tails: list[str]
    ceilings: dict | None = None
    finished: bool = True

    @property
    def ok(self) -> bool:
        return (not self.timed_out and all(code == 0 for code in self.codes)
                and self.finished)

    @property
    def write_error(self) -> str | None:
        """The message of a process that could not write the run folder (``CELL_ERROR`` with
        status ``cannot_write``), or None."""
        for error in self.cell_errors.values():
            if error.get("status") == CANNOT_WRITE:
                return str(error.get("error"))
        return None

    @property
    def phase(self) -> str:
        return "start-up" if self.current is None else "the cell"


def watch(launch: Launch, cells: list[dict], progress: Progress, cell_timeout_s: float,
          startup_timeout_s: float, *, startup_label: str | None = None,
          announced_twice: Collection[int] = ()) -> Outcome:
    """Follow ``launch`` to its end (see the module docstring). Start-up (imports, a process
    group's rendezvous, a timing worker's ceilings) has its own timeout and is shown as
    ``startup_label``; each cell then has ``cell_timeout_s`` from its ``START``.

    A cell is counted done when the worker announces another after it, or at ``FINISHED``.
    The cells of ``announced_twice`` (those a framework worker measures in interleaved blocks:
    every cell of the case is announced at its set-up, then again as it is finished after the
    blocks) are counted at the announcement after their second, so that the count follows the
    blocks' time instead of running ahead of it during the set-ups."""
    current, cell_errors, ceilings = None, {}, None
    got_finished = False
    finished: set[int] = set()  # processes whose output has ended
    announced: dict[int, int] = {}  # announcements of each cell so far (a re-measured cell is
    # announced again)
    counted: set[int] = set()  # cells already counted by the progress
    progress.startup(startup_label or f"{launch.name}: starting")
    deadline = time.monotonic() + startup_timeout_s
    timeout_now = startup_timeout_s
    timed_out = False

    def count(index: int) -> None:
        if index not in counted:
            progress.advance()
            counted.add(index)

    def handle(index: int, line: str) -> None:
        nonlocal current, deadline, timeout_now, ceilings, got_finished
        message = protocol.parse(line)
        if message is None:
            return
        if message.kind == protocol.START and 0 <= message.index < len(cells):
            if current is not None and (current not in announced_twice
                                        or announced[current] >= 2):
                count(current)
            current = message.index
            announced[current] = announced.get(current, 0) + 1
            progress.start(describe(cells[current]))
            deadline = time.monotonic() + cell_timeout_s
            timeout_now = cell_timeout_s
        elif message.kind == protocol.FINISHED:
            got_finished = True
            # Every cell has its record now, an interleaved one whose set-up failed (so never
            # announced again) included.
            for announced_cell in announced:
                count(announced_cell)
            current = None
        elif message.kind == protocol.CEILINGS:
            ceilings = message.payload
        elif message.kind == protocol.CELL_ERROR:
            cell_errors[index] = message.payload

    def take(index: int, line: str | None) -> None:
        if line is None:  # that process's output has ended
            finished.add(index)
        else:
            handle(index, line)

    def drain() -> None:
        while True:
            try:
                take(*launch.lines.get_nowait())
            except queue.Empty:
                return

    try:
        while True:
            try:
                take(*launch.lines.get(timeout=POLL_S))
            except queue.Empty:
                pass
            drain()  # every line that has come, before judging the processes' state
            progress.tick()
            codes = [p.poll() for p in launch.procs]
            if any(code not in (None, 0) for code in codes):
                # One process failed: the others cannot finish the cell (they would wait in a
                # collective). A short grace lets them print their own error first.
                time.sleep(min(1.0, cell_timeout_s))
                break
            if all(code == 0 for code in codes) and len(finished) == len(launch.procs):
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
    finally:
        codes = [p.poll() for p in launch.procs]  # None: still running, killed below
        tails = [tail(path) for path in launch.logs]  # before finish() moves the logs
        launch.finish()  # kills whatever is still running (a hung launch included)
        drain()  # lines written just before the end (the START of a cell that crashed, a late
        # CELL_ERROR)
        progress.end_launch()
    return Outcome(current, codes, cell_errors, timed_out, timeout_now, tails, ceilings,
                   finished=got_finished)
