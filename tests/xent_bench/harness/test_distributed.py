"""The distributed harness: cells with ``world``, the CLI, the report, and its safety claims
proved with real rank processes (a rank that SIGKILLs itself, a rank that hangs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xent_bench.cli import main as cli_main
from xent_bench.harness import distributed as dist_harness
from xent_bench.harness.cells import cell_key, make_cell
from xent_bench.harness.dist_worker import FAULT_ENV, parse_fault
from xent_bench.harness.records import Record, load_records
from xent_bench.reports import distributed_report
from xent_impls import Case, get
from xent_impls.distributed import modelled_comm_bytes

REPO = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------------------------
# Cells and keys


def test_world_joins_the_key_only_when_set():
    plain = make_cell("timing", get("torch/native/sparse"), Case(8, 10), "forward", "cpu")
    # The key of a cell without ``world`` is what it was before the key existed.
    assert cell_key(plain) == "timing|torch/native/sparse|8|10|float32|1.0|0|forward|cpu"
    one = dist_harness.make_dist_cell("torch", "sparse", Case(8, 10), "forward", 1)
    two = dist_harness.make_dist_cell("torch", "sparse", Case(8, 10), "forward", 2)
    assert one["world"] == 1 and one["kind"] == "timing"
    assert cell_key(one).endswith("|1") and cell_key(two).endswith("|2")
    assert cell_key(one) != cell_key(two)


def test_build_cells_groups_by_framework_and_world():
    cells = dist_harness.build_cells(frameworks=["torch", "jax"], worlds=[1, 2],
                                     sizes=[(8, 10)], passes=["forward", "forward_backward"])
    assert len(cells) == 8
    launches = [(c["framework"], c["world"]) for c in cells]
    assert launches == sorted(launches, key=launches.index)  # each launch's cells consecutive
    assert {c["impl"] for c in cells} == {"torch/vocab-parallel/sparse",
                                          "jax/vocab-parallel/sparse"}


@pytest.mark.parametrize("kw, needle", [
    ({"frameworks": ["mxnet"]}, "'mxnet'"),
    ({"frameworks": ["jax"], "dtypes": ["float64"]}, "float64"),
    ({"worlds": [0]}, "world size"),
    ({"passes": ["backward"]}, "'backward'"),
])
def test_build_cells_rejects_bad_values(kw, needle):
    with pytest.raises(ValueError, match=needle):
        dist_harness.build_cells(**({"sizes": [(8, 10)]} | kw))


@pytest.mark.parametrize("argv", [
    ["--world", "0"], ["--world", "two"], ["--framework", "mxnet"], ["--size", "12"],
    ["--dtype", "float8"], ["--budget", "0"], ["--form", "dense"], ["--pass", "backward"],
    ["--threads", "0"], ["--allocator", "tcmalloc"], ["--cell-timeout", "-1"],
    ["--framework", "jax", "--dtype", "float64"],
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, tmp_path, capsys):
    assert cli_main(["distributed", *argv, "--results", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xent-bench: error:"), err
    assert not any(tmp_path.iterdir())  # nothing was started


def test_parse_fault():
    assert parse_fault(None) is None
    assert parse_fault("kill:1") == {"action": "kill", "rank": 1, "size": None}
    assert parse_fault("hang:0:64x40") == {"action": "hang", "rank": 0, "size": "64x40"}
    with pytest.raises(ValueError, match="'explode:1'"):
        parse_fault("explode:1")


def test_failure_message_puts_the_cause_first():
    msg = dist_harness._failure_message(
        [1, -9, None], {0: {"status": "error", "error": "RuntimeError: Connection reset"}},
        timed_out=False, timeout_s=10, tails=["", "", ""])
    assert msg.startswith("rank 1 killed by signal SIGKILL")
    assert "rank 0 exited with status 1: RuntimeError: Connection reset" in msg
    assert msg.endswith("rank 2 was still running and was killed by the harness")
    hung = dist_harness._failure_message([None, None], {}, True, 3, ["", ""])
    assert hung.startswith("timed out after 3 s") and "hung: rank 0, rank 1" in hung


# --------------------------------------------------------------------------------------------
# The report (from records only)


def _record(world, median, status="ok", **extra) -> Record:
    cell = dist_harness.make_dist_cell("torch", "sparse", Case(64, 1000), "forward", world)
    metrics = {"median_s": median, "q1_s": median, "q3_s": median, "iqr_rel": 0.02,
               "noisy": 0.0, "rounds": 9.0, "loss_err_eps": 1.0, "loss_nonfinite": 0,
               "loss_rank_spread": 0.0, "world": float(world),
               "comm_bytes_per_rank": modelled_comm_bytes(64, 1000, world, "sparse", "forward",
                                                          4),
               "gather_bytes_per_rank": (world - 1) / world * 64 * 1000 * 4,
               "shard_logits_bytes": 64 * 1000 * 4 / world, "rank_peak_bytes": 2**20 / world}
    for r in range(world):
        metrics[f"rank_peak_bytes_r{r}"] = 2**20 / world
    if status != "ok":
        return Record(run_id="r", cell=cell, status=status,
                      error="rank 1 killed by signal SIGKILL",
                      metrics={"comm_bytes_per_rank": metrics["comm_bytes_per_rank"]})
    return Record(run_id="r", cell=cell, status="ok", metrics=metrics | extra)


def test_report_table_findings_and_tensorflow_statement():
    records = [_record(1, 0.010), _record(2, 0.008), _record(4, 0.0, status="error")]
    meta = {"run_id": "r", "machine": {"cpu_count": 2, "cpu_model": "cpu", "git_commit": "g"},
            "threads_per_rank": 1, "allocator": "default", "budget_s": 0.1}
    text = distributed_report.render(records, meta)
    assert "| `torch/vocab-parallel/sparse` | 2 | 64x1000 | float32 | forward | 8 |" in text
    assert "1.2x" in text  # world 1 median over world 2 median
    assert "0.5 / 0.5" in text  # per-rank peak MiB at world 2
    assert "**error**" in text and "rank 1 killed by signal SIGKILL" in text
    assert "world 2: 1.2x the speed of world 1, peak memory per rank 0.5 MiB (0.5x)" in text
    assert "## TensorFlow" in text and "DTensor" in text and "MirroredStrategy" in text
    assert "1 cell(s) did not run to the end" in text


# --------------------------------------------------------------------------------------------
# Real launches


def _run(tmp_path, cells, timeout_s, fault=None, monkeypatch=None, **kw):
    if fault:
        monkeypatch.setenv(FAULT_ENV, fault)
    meta = dist_harness.new_meta(cells, threads=1, allocator=dist_harness.DEFAULT_ALLOCATOR,
                                 budget_s=0.02,
                                 timeout_s=timeout_s)
    run_dir = tmp_path / meta["run_id"]
    started = time.monotonic()
    dist_harness.run_distributed(run_dir, cells, timeout_s, meta=meta, progress=False, **kw)
    return run_dir, load_records(run_dir), time.monotonic() - started


def test_killed_rank_is_an_error_record_and_the_run_goes_on(tmp_path, monkeypatch):
    """Rank 1 SIGKILLs itself in the timed rounds of the first cell; the second cell (a fresh
    launch) is measured, agrees with the oracle, and carries every rank's memory."""
    cells = dist_harness.build_cells(frameworks=["torch"], worlds=[2],
                                     sizes=[(64, 37), (64, 40)], passes=["forward_backward"])
    run_dir, records, _ = _run(tmp_path, cells, 120, "kill:1:64x37", monkeypatch)
    assert [r.key for r in records] == [cell_key(c) for c in cells]
    failed, ok = records
    assert failed.status == "error"
    assert failed.error.startswith("rank 1 killed by signal SIGKILL"), failed.error
    assert failed.metrics["comm_bytes_per_rank"] == modelled_comm_bytes(
        64, 37, 2, "sparse", "forward_backward", 4)
    assert ok.status == "ok", ok.error
    m = ok.metrics
    assert m["loss_err_eps"] <= 16 and m["grad_err_eps"] <= 16 and m["loss_rank_spread"] == 0
    assert m["comm_bytes_per_rank"] == 3 * 4 * 64  # 3 all-reduces of 64 float32, world 2
    assert [r["rank"] for r in ok.raw["per_rank"]] == [0, 1]
    assert "rank_peak_bytes_r1" in m and m["rank_peak_bytes"] >= m["rank_peak_bytes_r1"]
    assert m["rounds"] >= 5 and len(ok.raw["times_s"]) == m["rounds"]
    assert ok.env["world"] == 2 and ok.env["threads"] == 1
    assert "killed" in (run_dir / "workers.log").read_text()
    assert not list(run_dir.glob(".dist-*"))  # task files and per-process logs cleaned up
    report = distributed_report.write_report(run_dir).read_text()
    assert "**error**" in report and "| pass" in report


def _alive_with(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def test_hung_rank_is_killed_by_the_timeout(tmp_path, monkeypatch):
    cells = dist_harness.build_cells(frameworks=["torch"], worlds=[2], sizes=[(64, 37)],
                                     passes=["forward"])
    run_dir, records, took = _run(tmp_path, cells, 3, "hang:1", monkeypatch,
                                  startup_timeout_s=240)
    (rec,) = records
    assert rec.status == "error"
    assert rec.error.startswith("timed out after 3 s without finishing the cell"), rec
    assert "hung: rank 0, rank 1" in rec.error
    assert not _alive_with(str(run_dir))  # every rank of the launch is gone
    assert took < 240


def test_cli_jax_run_report_and_resume(tmp_path):
    """``xent-bench distributed`` end to end with JAX (one process per world size)."""
    args = [sys.executable, "-m", "xent_bench", "distributed", "--framework", "jax",
            "--world", "2", "--size", "32x37", "--pass", "forward_backward", "--budget",
            "0.02", "--results", str(tmp_path), "--no-progress"]
    env = dict(os.environ) | {"PYTHONPATH": str(REPO)}
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["kind"] == "distributed" and meta["worlds"] == [2]
    records = load_records(run_dir)
    assert [(r.cell["world"], r.status) for r in records] == [(2, "ok")]
    two = records[0].metrics
    assert two["hlo_all_gather"] == 0 and two["hlo_all_reduce"] >= 1
    assert two["grad_err_eps"] <= 16
    assert "device_plan_bytes" in two
    report = (run_dir / "distributed.md").read_text()
    assert "`jax/vocab-parallel/sparse` | 2 | 32x37" in report
    resumed = subprocess.run([sys.executable, "-m", "xent_bench", "distributed", "--resume",
                              str(run_dir), "--no-progress"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(load_records(run_dir)) == 1  # nothing left to measure


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_process_groups_store_listens_on_loopback_only():
    """torch's store made from MASTER_ADDR=127.0.0.1 listened on every interface (*:port);
    rank 0's store now listens on 127.0.0.1 alone, and a group forms over it."""
    import datetime

    torch_dist = pytest.importorskip("torch.distributed")
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp to read the listening sockets from")
    from xent_bench.harness.dist_worker import loopback_store

    port = dist_harness.free_port()
    store = loopback_store(torch_dist, 0, 1, port, datetime.timedelta(seconds=30))
    assert _listening(port) == {"0100007F"}  # 127.0.0.1, little-endian hex; nothing else
    store.set("key", "value")
    assert store.get("key") == b"value"
