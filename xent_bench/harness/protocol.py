"""The worker protocol: the lines a worker process writes for the harness that watches it
(``xent_bench/harness/launch.py``), and their parser.

The lines go over a channel of their own: a pipe whose file descriptor the launcher passes in
``XENT_PROTOCOL_FD``. The implementations a worker runs print to its standard output, which the
launcher sends to the worker's log with its standard error, so nothing an implementation
prints (a line starting with ``START``, say) can be taken for the protocol. Without the
variable (a worker run by hand, a test calling the worker's functions) the lines go to
standard output.

Every worker kind (the framework worker ``worker.py``, the vocabulary-parallel ranks
``dist_worker.py``) speaks it:

- ``START i``: the worker begins cell ``i`` of its task (so the harness knows which cell a crash
  or a hang interrupted, and when that cell's timeout starts);
- ``FINISHED``: every cell of the task has its record on disk;
- ``CEILINGS {json}``: ``{framework: ceilings}`` measured by a timing worker before its cells;
- ``CELL_ERROR {json}``: ``{"status", "error"}`` of the failure that ends the process (a rank
  that cannot go on), written just before it exits; status ``cannot_write`` (``records.
  CANNOT_WRITE``) when the run folder cannot take the cell's record (a full disk): the harness
  then stops the run instead of starting a fresh worker.

Any other line is not part of the protocol and is ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys

START = "START"
FINISHED = "FINISHED"
CEILINGS = "CEILINGS"
CELL_ERROR = "CELL_ERROR"
CHANNEL_ENV = "XENT_PROTOCOL_FD"


@dataclasses.dataclass(frozen=True)
class Message:
    kind: str  # START, FINISHED, CEILINGS or CELL_ERROR
    index: int | None = None  # START: the cell's index in the task
    payload: dict | None = None  # CEILINGS and CELL_ERROR


def parse(line: str) -> Message | None:
    """The message on one line of a worker's output, or None for any other line."""
    word, _, rest = line.strip().partition(" ")
    try:
        if word == START and rest.isdigit():
            return Message(START, index=int(rest))
        if word == FINISHED and not rest:
            return Message(FINISHED)
        if word in (CEILINGS, CELL_ERROR):
            payload = json.loads(rest)
            if isinstance(payload, dict):
                return Message(word, payload=payload)
    except json.JSONDecodeError:
        pass
    return None


@functools.cache
def _pipe(fd: int):
    return os.fdopen(fd, "w", encoding="utf-8", closefd=False)


def _channel():
    """The protocol's channel: the pipe named by ``XENT_PROTOCOL_FD``, else standard output."""
    fd = os.environ.get(CHANNEL_ENV, "")
    return _pipe(int(fd)) if fd.isdigit() else sys.stdout


def _send(text: str) -> None:
    print(text, file=_channel(), flush=True)


def send_start(index: int) -> None:
    _send(f"{START} {index}")


def send_finished() -> None:
    _send(FINISHED)


def send_ceilings(ceilings: dict) -> None:
    _send(f"{CEILINGS} {json.dumps(ceilings)}")


def send_cell_error(status: str, error: str) -> None:
    _send(f"{CELL_ERROR} {json.dumps({'status': status, 'error': error})}")
