"""``xent-bench gpu-check``: both run folders, the comparison table, bad input."""

from __future__ import annotations

import pytest

from xent_bench.cli import main


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
