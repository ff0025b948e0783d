"""Writing into folders that may come from someone else.

Run folders are shared (a colleague's results, a CI artefact), so a file already at an output
path may be a symbolic link to a file elsewhere. Every report, table, plot and ``meta.json``
is written here the same way: into a new temporary file in the same folder (created with
``O_EXCL``, so never through an existing name), flushed to disk, then renamed over the output
path. The rename replaces a link at that path instead of writing through it, and a reader (or
a run killed half-way) sees the old file or the new one, never a truncated one. Folders that
are links are refused, as is writing over anything that is not a regular file or a link.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

FILE_MODE = 0o644
# Names that become parts of output paths or lines of a report (run ids): letters, digits and
# ``._-``, starting with a letter or digit, so no path separator, no "..", no control character
# and no Markdown or HTML markup can come in through them.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# The largest files read from a run folder (a folder can hold anything).
MAX_META_BYTES = 16 * 2**20
MAX_RECORDS_BYTES = 2**30
# The most records one run folder may hold: 50 times the default grid. The reports' memory and
# time grow with it (10**4 records of as many cases: 0.7 GB and 2 min 13 s here), so a crafted
# folder of 10**5 or 10**6 small records is refused instead of exhausting the machine.
MAX_RECORDS = 20_000


class UnsafePathError(ValueError):
    """An output path that would write through a link or over a special file."""


class WriteError(OSError):
    """An output file could not be written (a full disk, a read-only folder, a file size
    limit); what was written before is intact."""


class FolderBusyError(ValueError):
    """A run folder another xent-bench process is measuring into."""


LOCK = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock while measuring into it: a second run or ``--resume`` of the
    same folder at the same time would measure every cell twice. The lock is the kernel's
    (``flock``), so it goes with the process that held it, however that process ends."""
    import fcntl  # POSIX only; the harness measures on Linux

    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        raise UnsafePathError(f"cannot create the lock {path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusyError(f"another xent-bench process is measuring into {run_dir}; "
                                  "wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def is_safe_name(value) -> bool:
    """Whether ``value`` is a string that may name a file or a run (``SAFE_NAME``)."""
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None and ".." not in value


def check_readable(path: Path, limit: int) -> Path:
    """``path`` if it is a regular file of at most ``limit`` bytes (a link to one is read);
    ``ValueError`` naming it otherwise: a FIFO would block the reader forever, a device such
    as ``/dev/zero`` would never end."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path} is not a regular file; refusing to read it")
    if info.st_size > limit:
        raise ValueError(f"{path} is {info.st_size} bytes, over the {limit}-byte limit for it")
    return path


def check_output_dir(folder: Path) -> Path:
    """``folder``, created if missing; ``UnsafePathError`` if it is a symbolic link, if it or
    a folder above it is something other than a folder (a file given as ``--results``), or if
    it cannot be created."""
    folder = Path(folder)
    if folder.is_symlink():
        raise UnsafePathError(f"{folder} is a symbolic link; refusing to write into it")
    for above in (folder, *folder.parents):
        if above.exists() and not above.is_dir():
            raise UnsafePathError(f"{above} is not a folder; cannot write {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UnsafePathError(f"cannot create {folder}: {exc.strerror or exc}") from None
    return folder


def _check_target(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise UnsafePathError(f"{path} exists and is not a regular file; refusing to replace it")


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A fresh temporary path to write to; on success it is renamed over ``path``."""
    path = Path(path)
    check_output_dir(path.parent)
    _check_target(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as exc:  # the old file, if any, is still whole: only the rename replaces it
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def write_with(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to write a temporary file, then rename it over ``path``."""
    with replacing(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` by a rename, never through a link."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
