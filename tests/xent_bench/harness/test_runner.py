"""Safety claims of the runner, proved with real processes: kills, crashes, resume, truncation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xent_bench.harness import provenance
from xent_bench.harness.cells import cell_key
from xent_bench.harness.records import Record, TruncatedRecordWarning, load_records

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "tests" / "plugins"  # test-only implementations (XENT_IMPLS_PLUGINS)


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), str(REPO), env.get("PYTHONPATH", "")])
    env["XENT_IMPLS_PLUGINS"] = "fault_impls"
    return env


def _cli(*args: str, results: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xent_bench", *args, "--results", str(results), "--no-progress",
         "--no-report"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600, **kw,
    )


def _run_folder(results: Path) -> Path:
    (folder,) = [p for p in results.iterdir() if p.is_dir()]
    return folder


def _keys(records):
    return [r.key for r in records]


SLOW_GRID = ("run", "--preset", "smoke", "--impl", "numpy/slow/sparse", "--dtype", "float32",
             "--size", "8x10,16x10,32x10,64x10", "--budget", "0.01", "--repeats", "1")


def _wait_for_records(path: Path, count: int, proc: subprocess.Popen, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"no {count} records in {path} after {timeout} s")


def test_sigkill_mid_run_keeps_earlier_cells_and_resume_completes(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "xent_bench", *SLOW_GRID, "--results", str(tmp_path),
         "--no-progress", "--no-report"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # Wait until the run folder and two finished cells exist, then kill runner and worker.
        deadline = time.monotonic() + 120
        while not any(tmp_path.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        folder = _run_folder(tmp_path)
        _wait_for_records(folder / "records.jsonl", 2, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        # The worker runs in its own session: kill it too, as a machine crash would.
        for pid in _worker_pids(folder):
            os.kill(pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
    before = (folder / "records.jsonl").read_text()
    interrupted = load_records(folder)
    meta = json.loads((folder / "meta.json").read_text())
    assert 2 <= len(interrupted) < len(meta["cells"]), "the kill must land mid-run"

    done = _cli("run", "--resume", str(folder), results=tmp_path)
    assert done.returncode == 0, done.stderr
    after = load_records(folder)
    assert (folder / "records.jsonl").read_text().startswith(before.rstrip("\n")), \
        "earlier records must be kept byte for byte"
    assert sorted(_keys(after)) == sorted(cell_key(c) for c in meta["cells"])
    assert len(set(_keys(after))) == len(after), "resume must not duplicate finished cells"
    assert all(r.status == "ok" for r in after)
    assert _keys(after)[: len(interrupted)] == _keys(interrupted)


def _worker_pids(folder: Path) -> list[int]:
    pids = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "xent_bench.harness.worker" in cmdline and str(folder) in cmdline:
            pids.append(int(proc_dir.name))
    return pids


def test_worker_killed_mid_cell_becomes_error_record_and_run_goes_on(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "xent_bench", *SLOW_GRID, "--results", str(tmp_path),
         "--no-progress", "--no-report"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not any(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    folder = _run_folder(tmp_path)
    _wait_for_records(folder / "records.jsonl", 1, proc)
    pids = _worker_pids(folder)
    assert pids, "a worker must be running"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    records = load_records(folder)
    meta = json.loads((folder / "meta.json").read_text())
    assert sorted(_keys(records)) == sorted(cell_key(c) for c in meta["cells"])
    errors = [r for r in records if r.status == "error"]
    assert len(errors) == 1, [r.error for r in errors]
    assert "SIGKILL" in errors[0].error
    assert sum(r.status == "ok" for r in records) == len(meta["cells"]) - 1


def test_crashing_worker_is_an_error_record_and_other_frameworks_complete(tmp_path):
    done = _cli("agreement", "--preset", "agreement-smoke", "--impl", "numpy/abort/sparse",
                "--impl", "numpy/fail/sparse", "--impl", "torch/native/sparse", "--dtype",
                "float32", results=tmp_path)
    assert done.returncode == 0, done.stderr
    records = load_records(_run_folder(tmp_path))
    by_impl: dict[str, list[Record]] = {}
    for r in records:
        by_impl.setdefault(r.cell["impl"], []).append(r)
    assert set(by_impl) == {"numpy/abort/sparse", "numpy/fail/sparse", "torch/native/sparse"}
    assert all(r.status == "error" and "SIGABRT" in r.error
               for r in by_impl["numpy/abort/sparse"])
    assert all(r.status == "error" and "deliberate failure" in r.error
               for r in by_impl["numpy/fail/sparse"])
    torch_cells = by_impl["torch/native/sparse"]
    assert len(torch_cells) == 2 and all(r.status == "ok" for r in torch_cells)
    assert all(r.metrics["loss_err_eps"] < 16 for r in torch_cells)


def test_truncated_last_line_is_reported_and_skipped(tmp_path):
    done = _cli("agreement", "--preset", "agreement-smoke", "--framework", "numpy",
                "--impl", "numpy/reference/*", results=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = _run_folder(tmp_path)
    path = folder / "records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # cut the last write

    with pytest.warns(TruncatedRecordWarning, match="truncated"):
        records = load_records(folder)
    assert len(records) == len(lines) - 1

    # Resume re-measures the lost cell after the cut-off line, and the file loads again.
    resumed = _cli("agreement", "--resume", str(folder), results=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "cut-off line" in resumed.stderr
    with pytest.warns(TruncatedRecordWarning):
        records = load_records(folder)
    assert len(records) == len(lines)
    assert len(set(_keys(records))) == len(records)


def test_out_of_memory_is_a_result_with_its_size(tmp_path):
    done = _cli("run", "--preset", "smoke", "--impl", "numpy/oom/sparse", "--impl",
                "numpy/reference/sparse", "--size", "64x1000", "--dtype", "float32",
                "--pass", "forward", "--budget", "0.01", "--repeats", "1", results=tmp_path)
    assert done.returncode == 0, done.stderr
    records = {r.cell["impl"]: r for r in load_records(_run_folder(tmp_path))}
    oom = records["numpy/oom/sparse"]
    assert oom.status == "oom"
    assert "MemoryError" in oom.error
    assert oom.metrics["logits_bytes"] == 64 * 1000 * 4
    assert records["numpy/reference/sparse"].status == "ok", "the run goes on after an OOM"


def _start_slow_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xent_bench", *SLOW_GRID, "--results", str(tmp_path),
         "--no-progress", "--no-report"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not any(tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    folder = _run_folder(tmp_path)
    _wait_for_records(folder / "records.jsonl", 1, proc)
    return proc, folder


def test_workers_die_with_the_runner(tmp_path):
    """Killing only the runner (not its process group) leaves no worker behind to append
    records while a resume measures the same cells again."""
    proc, folder = _start_slow_run(tmp_path)
    pids = _worker_pids(folder)
    assert pids, "a worker must be running"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while _worker_pids(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _worker_pids(folder) == []
    count = len(load_records(folder))
    # As if the run had started on another machine and commit: the resumed cells must carry
    # where they were measured, not what meta.json says.
    meta = json.loads((folder / "meta.json").read_text())
    meta["machine"] |= {"git_commit": "0123456789ab", "cpu_model": "Elsewhere CPU"}
    (folder / "meta.json").write_text(json.dumps(meta))
    resumed = _cli("run", "--resume", str(folder), results=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    records = load_records(folder)
    assert len(records) == len(set(_keys(records))) >= count, "no cell measured twice"
    new = records[count:]
    assert new and all(r.env["git_commit"] == provenance.git_commit()
                       and r.env["cpu_model"] == provenance.cpu_model() for r in new)


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    proc, folder = _start_slow_run(tmp_path)
    try:
        second = _cli("run", "--resume", str(folder), results=tmp_path)
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"xent-bench: error: another xent-bench process is measuring into {folder}; wait "
            "for it to finish"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)


def test_an_implementation_that_exits_with_status_0_is_an_error_and_the_rest_run(tmp_path):
    done = _cli("run", "--preset", "smoke", "--impl", "numpy/exit0/sparse", "--impl",
                "numpy/reference/sparse", "--size", "16x10", "--dtype", "float32", "--pass",
                "forward", "--budget", "0.01", "--repeats", "1", results=tmp_path)
    assert done.returncode == 0, done.stderr
    records = {r.cell["impl"]: r for r in load_records(_run_folder(tmp_path))}
    assert records["numpy/exit0/sparse"].status == "error"
    assert "status 0 before it finished" in records["numpy/exit0/sparse"].error
    assert records["numpy/reference/sparse"].status == "ok"


def test_what_an_implementation_prints_is_not_read_as_protocol(tmp_path):
    done = _cli("run", "--preset", "smoke", "--impl", "numpy/chatty/sparse", "--impl",
                "numpy/reference/sparse", "--size", "16x10", "--dtype", "float32", "--pass",
                "forward", "--budget", "0.01", "--repeats", "1", results=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = _run_folder(tmp_path)
    records = load_records(folder)
    assert sorted(r.cell["impl"] for r in records) == ["numpy/chatty/sparse",
                                                       "numpy/reference/sparse"]
    assert all(r.status == "ok" for r in records)
    assert "START 999" in (folder / "workers.log").read_text()  # it went to the log


def test_a_result_of_the_wrong_shape_is_an_error_not_a_pass(tmp_path):
    done = _cli("run", "--preset", "smoke", "--impl", "numpy/doubled/sparse", "--size", "16x10",
                "--dtype", "float32", "--budget", "0.01", "--repeats", "1", results=tmp_path)
    assert done.returncode == 0, done.stderr
    records = load_records(_run_folder(tmp_path))
    assert len(records) == 2  # forward and forward+backward
    for r in records:
        assert r.status == "error" and "loss of shape (32,), expected (16,)" in r.error, r.error


def test_cell_timeout_kills_a_cell_that_runs_too_long_and_the_run_goes_on(tmp_path):
    """numpy/slow/sparse sleeps 0.2 s a call: its first call, warm-up, rounds and memory trials
    take well over 1 s, so with --cell-timeout 1 the cell is killed and recorded as an error,
    and the run ends normally (exit status 0)."""
    done = _cli("run", "--preset", "smoke", "--impl", "numpy/slow/sparse", "--dtype", "float32",
                "--size", "8x10", "--pass", "forward", "--budget", "0.01", "--cell-timeout", "1",
                results=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (rec,) = load_records(_run_folder(tmp_path))
    assert rec.status == "error"
    assert rec.error.startswith("worker timed out after 1 s in a cell and was killed"), rec.error


def _with_file_size_limit(limit: int, *argv: str) -> list[str]:
    """A command that runs ``python -m xent_bench ARGV`` where no file it or its children write
    may grow past ``limit`` bytes: writes beyond it fail with EFBIG, as on a full disk (SIGXFSZ
    ignored, so they fail rather than kill). Set in the child itself, not by a preexec_fn (a
    fork of this multithreaded test process)."""
    code = ("import resource, runpy, signal, sys; "
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            f"sys.argv = ['xent-bench', *{list(argv)!r}]; "
            "runpy.run_module('xent_bench', run_name='__main__')")
    return [sys.executable, "-c", code]


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="no file size limits here")
def test_a_run_that_cannot_write_stops_with_one_line_and_loses_no_record(tmp_path):
    """records.jsonl may hold two of the four records (meta.json, 3 KB, still fits): the run
    stops at the third with one line and exit 2, the file ends at the second whole record,
    and --resume without the limit measures the other two, each once."""
    grid = ["--preset", "smoke", "--impl", "numpy/reference/*", "--no-progress"]
    limited = subprocess.run(
        _with_file_size_limit(4500, "run", *grid, "--no-report", "--results", str(tmp_path)),
        cwd=REPO, capture_output=True, text=True, timeout=300)
    (run_dir,) = tmp_path.iterdir()
    errors = [ln for ln in limited.stderr.splitlines() if ln.startswith("xent-bench: error")]
    assert limited.returncode == 2, limited.stderr[-2000:]
    assert len(errors) == 1 and "cannot write" in errors[0] and "records.jsonl" in errors[0]
    assert f"--resume {run_dir}" in errors[0]
    assert "Traceback" not in limited.stderr
    text = (run_dir / "records.jsonl").read_text()
    assert text.endswith("\n") and len(load_records(run_dir)) == 2  # no cut-off line
    resumed = subprocess.run(
        [sys.executable, "-m", "xent_bench", "run", "--resume", str(run_dir), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    keys = [cell_key(r.cell) for r in load_records(run_dir)]
    assert len(keys) == 4 and len(set(keys)) == 4
