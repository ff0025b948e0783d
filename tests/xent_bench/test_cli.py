"""The command line: bad input is one line on stderr and exit status 2; list and presets."""

from __future__ import annotations

import pytest

from xent_bench.cli import main
from xent_bench.harness.presets import PRESETS, build_cells, get_preset


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--impl", "torch/nativ/sparse"], "torch/native/sparse"),  # close match offered
        (["run", "--framework", "pytorch"], "unknown framework 'pytorch'"),
        (["run", "--size", "1024by32000"], "malformed size '1024by32000'"),
        (["run", "--size", "1024*32000"], "did you mean 1024x32000?"),
        (["run", "--dtype", "bfloat61"], "Did you mean: bfloat16"),
        (["run", "--pass", "forwrd"], "Did you mean: forward"),
        (["run", "--form", "spares"], "Did you mean: sparse?"),
        (["run", "--size", "1024x0"], "malformed size '1024x0'"),
        (["run", "--dtype", "float8"], "unknown dtype 'float8'"),
        (["run", "--form", "dense"], "unknown form 'dense'"),
        (["run", "--pass", "backward"], "unknown pass 'backward'"),
        (["run", "--preset", "huge"], "unknown preset 'huge'"),
        (["run", "--preset", "smok"], "Did you mean: smoke?"),
        (["run", "--preset", "agreement"], "is a agreement preset"),
        (["run", "--allocator", "jemalloc"], "unknown allocator 'jemalloc'"),
        (["run", "--device", "tpu"], "unknown device 'tpu'"),
        (["run", "--threads", "0"], "--threads must be at least 1"),
        (["agreement", "--scale", "ten"], "malformed scale 'ten'"),
        (["run", "--resume", "/nonexistent/run"], "is not a run folder"),
        (["report", "/nonexistent/run"], "is not a run folder"),
        (["frobnicate"], "invalid choice"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_bad_input_is_one_line_and_exit_2(args, expected, capsys, tmp_path):
    assert main([*args, "--results", str(tmp_path)] if args[0] in ("run", "agreement")
                else args) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir()), "a rejected command must not create a run folder"


def test_missing_cuda_device_is_a_usage_error(capsys, tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code = main(["run", "--preset", "smoke", "--framework", "torch", "--device", "cuda",
                 "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "device 'cuda' is not available to torch" in err


def test_list_names_every_implementation_and_preset(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for impl_id in ("torch/native/sparse", "jax/optax/onehot", "tensorflow/keras-probs/sparse",
                    "numpy/reference/sparse"):
        assert impl_id in out
    for name in PRESETS:
        assert name in out


def test_default_preset_spans_the_required_grid():
    cells = build_cells(get_preset("default"))
    assert {(c["c"]) for c in cells} >= {10, 1000, 32000}
    assert {c["dtype"] for c in cells} == {"float32", "bfloat16"}
    assert {c["form"] for c in cells} == {"sparse", "onehot"}
    assert {c["pass"] for c in cells} == {"forward", "forward_backward"}
    assert {c["framework"] for c in cells} == {"torch", "jax", "tensorflow"}
    assert all(c["device"] == "cpu" for c in cells)


def test_smoke_preset_covers_all_frameworks_and_forms():
    cells = build_cells(get_preset("smoke"))
    assert {(c["framework"], c["form"]) for c in cells} == {
        (fw, form) for fw in ("torch", "jax", "tensorflow") for form in ("sparse", "onehot")
    }


def test_filters_replace_the_preset_choice():
    cells = build_cells(get_preset("smoke"), impl_patterns=["jax/*"], forms=["onehot"],
                        sizes=[(8, 3)], passes=["forward"])
    # jax/pallas/onehot runs on the CPU only in Pallas' interpreter: never timed there.
    assert {c["impl"] for c in cells} == {"jax/optax/onehot", "jax/optax-eager/onehot",
                                          "jax/manual/onehot", "jax/naive/onehot",
                                          "jax/chunked/onehot"}
    assert {(c["n"], c["c"], c["pass"]) for c in cells} == {(8, 3, "forward")}


def test_version_prints_the_installed_version(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == \
        f"xent-bench {importlib.metadata.version('xent-bench')}"


@pytest.mark.parametrize("below", ["", "sub"])
def test_results_that_is_a_file_is_one_line_and_exit_2(tmp_path, capsys, below):
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("keep me")
    code = main(["run", "--preset", "smoke", "--impl", "torch/native/sparse", "--results",
                 str(not_a_folder / below) if below else str(not_a_folder)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{not_a_folder} is not a folder" in err
    assert not_a_folder.read_text() == "keep me"
