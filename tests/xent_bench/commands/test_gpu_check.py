"""``xent-bench gpu-check``: both run folders, the comparison table, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xent_bench.cli import main
from xent_bench.harness import runner
from xent_bench.harness.records import Record, append_record

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_quick_check_on_cpu_writes_two_runs_and_one_table(tmp_path, capsys):
    pytest.importorskip("torch")
    rc = main(["gpu-check", "--device", "cpu", "--quick", "--impl", "torch/*",
               "--results", str(tmp_path), "--no-progress"])
    assert rc == 0
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert len(runs) == 2 and "agreement" in runs[0] and "timing" in runs[1], runs
    for run in runs:
        assert (tmp_path / run / "report.md").is_file()
    table = (tmp_path / runs[1] / "gpu-check.md").read_text()
    assert table == capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("| cell |"))
    assert header.split("|")[2:-1] == [" torch/chunked ", " torch/native "]
    rows = [line for line in table.splitlines() if line.startswith("| 1024x10 float32")]
    assert len(rows) == 2 and all("%" in r and "error" not in r for r in rows), rows
    # Triton is timed only on a GPU, but its kernels are checked on the CPU by the interpreter.
    verdicts = {line.split("|")[1].strip(): line.split("|")[2].strip()
                for line in table.splitlines() if line.startswith("| torch/")}
    for form in ("sparse", "onehot"):
        for variant in ("native", "chunked"):
            assert verdicts[f"torch/{variant}/{form}"].startswith("pass"), verdicts
    if "torch/triton/sparse" in verdicts:
        assert "error" not in verdicts["torch/triton/sparse"], verdicts


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--device", "tpu"], "unknown device 'tpu'"),
     (["--device", "cpu", "--impl", "numpy/*"], "has no cell for this selection")],
)
def test_bad_input_is_one_line_and_exit_2(args, expected, tmp_path, capsys):
    assert main(["gpu-check", *args, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# The comparison table from synthetic run folders, without matplotlib or pyarrow


def _cell(kind: str, impl: str, n: int, c: int, dtype: str, pass_: str) -> dict:
    framework, variant, form = impl.split("/")
    return {"kind": kind, "impl": impl, "framework": framework, "form": form, "variant": variant,
            "n": n, "c": c, "dtype": dtype, "scale": 1.0, "seed": 0, "pass": pass_,
            "device": "cuda"}


def _run(path: Path, kind: str, records: list[Record], **meta) -> Path:
    info = runner.new_meta(kind, device="cuda", threads=1, allocator="default", budget_s=0.1,
                           min_rounds=1, max_rounds=5, preset="gpu-check",
                           cells=[r.cell for r in records], notes=[]) | meta
    path.mkdir()
    runner.write_meta(path, info)
    for rec in records:
        append_record(path, rec)
    return path


def _synthetic_runs(tmp_path: Path) -> tuple[Path, Path]:
    env = {"device_name": "Test GPU"}
    timing = []
    for pass_ in ("forward", "forward_backward"):
        for impl, pct, peak in (("torch/native/sparse", 40.0, 2 * 40960.0),
                                ("torch/chunked/sparse", 123.4, 0.5 * 40960.0)):
            timing.append(Record(run_id="t", cell=_cell("timing", impl, 1024, 10, "float32",
                                                         pass_),
                                 status="ok", env=env,
                                 metrics={"median_s": 1e-3, "pct_of_limit": pct,
                                          "peak_extra_bytes": peak, "logits_bytes": 40960.0}))
    timing.append(Record(run_id="t", cell=_cell("timing", "torch/chunked/sparse", 64, 5000,
                                                "float32", "forward"),
                         status="oom", error="OutOfMemoryError", env=env))
    agreement = [
        Record(run_id="a", cell=_cell("agreement", impl, 32, 100, dtype, "forward_backward"),
               status="ok", metrics={"loss_nonfinite": 0, "grad_nonfinite": 0,
                                     "loss_err_eps": loss, "grad_err_eps": 0.25})
        for impl in ("torch/native/sparse", "torch/chunked/sparse")
        for dtype, loss in (("float32", 1.5), ("bfloat16", 0.5))
    ]
    ceilings = {"best": {"copy_GBps": 3000.0, "read_GBps": 4012.5, "exp_Gps": 512.25}}
    return (_run(tmp_path / "agreement", "agreement", agreement),
            _run(tmp_path / "timing", "timing", timing, ceilings=ceilings))


def test_comparison_table_needs_neither_matplotlib_nor_pyarrow(tmp_path):
    agree_dir, time_dir = _synthetic_runs(tmp_path)
    script = ("import sys\n"
              "sys.modules.update(matplotlib=None, pyarrow=None)  # importing them fails\n"
              "from xent_bench.reports import gpu_check_report\n"
              f"print(gpu_check_report.comparison_markdown({str(agree_dir)!r}, "
              f"{str(time_dir)!r}), end='')\n")
    env = dict(os.environ) | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    table = done.stdout
    assert table.startswith("# gpu-check: ")
    assert "Device: cuda (Test GPU); ceilings: copy 3000 GB/s, read 4012 GB/s, exp 512 G/s" \
        in table
    header = next(line for line in table.splitlines() if line.startswith("| cell |"))
    assert header.split("|")[2:-1] == [" torch/chunked ", " torch/native "]
    rows = [line for line in table.splitlines() if line.startswith("| 1024x10 float32")]
    assert rows == ["| 1024x10 float32 forward | **123% · 0.500L** | 40% · 2.00L |",
                    "| 1024x10 float32 forward_backward | **123% · 0.500L** | 40% · 2.00L |"]
    assert "| 5000x64" not in table and "| 64x5000 float32 forward | **oom** |  |" in table
    verdicts = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
                for line in table.splitlines() if line.startswith("| torch/")}
    assert verdicts == {"torch/chunked/sparse": ["pass 2", "1.5 / 0.2"],
                        "torch/native/sparse": ["pass 2", "1.5 / 0.2"]}
