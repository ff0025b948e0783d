"""Importing a pytest-benchmark JSON file: records of the real schema, and a ValueError naming
the problem for a malformed file."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from xent_bench.cli import main
from xent_bench.harness.pytest_import import import_json, import_or_reuse
from xent_bench.harness.records import Record, load_records

TIMES = [1.0e-3, 1.1e-3, 0.9e-3, 1.2e-3, 1.0e-3]
CEILINGS = {"copy_GBps": 20.0, "read_GBps": 25.0, "exp_Gps": 1.0}


def _data() -> dict:
    """A minimal pytest-benchmark JSON file as benchmarks/test_cross_entropy.py writes it."""
    info = {"impl": "torch/native/sparse", "framework": "torch", "form": "sparse",
            "variant": "native", "n": 256, "c": 1000, "dtype": "float32", "pass": "forward",
            "device": "cpu", "scale": 1.0, "seed": 0, "times_s": TIMES, "loss_err_eps": 1.0,
            "first_call_s": 0.01, "threads": 2, "cache_mode": "warm (no flush)",
            "device_name": "cpu"}
    return {"version": "5.1.0", "datetime": "2026-01-01T00:00:00",
            "machine_info": {"node": "box", "cpu": {"count": 2},
                             "xent": {"cpu_model": "Test CPU", "threads": 2,
                                      "versions": {"torch": {"torch": "9.9"}},
                                      "ceilings": {"best": CEILINGS}}},
            "commit_info": {"id": "abc123456789", "dirty": False},
            "benchmarks": [{"name": "test_cross_entropy[torch-256x1000]", "extra_info": info,
                            "stats": {"data": TIMES}}]}


def _write(tmp_path, data) -> object:
    path = tmp_path / "bench.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_import_builds_records_with_the_runner_statistics(tmp_path):
    run_dir = import_json(_write(tmp_path, _data()), tmp_path / "results")
    (rec,) = load_records(run_dir)
    assert isinstance(rec, Record) and rec.status == "ok" and rec.error is None
    assert rec.cell["kind"] == "timing" and rec.cell["n"] == 256
    assert rec.metrics["median_s"] == pytest.approx(float(np.median(TIMES)))
    assert rec.metrics["rounds"] == len(TIMES) and rec.metrics["loss_err_eps"] == 1.0
    assert rec.metrics["pct_of_limit"] > 0  # floor metrics from the session's ceilings
    assert rec.raw["times_s"] == TIMES and rec.labels == {"cache_mode": "warm (no flush)"}
    assert rec.env["source"] == "pytest-benchmark" and rec.env["versions"] == {"torch": "9.9"}
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["cells"] == [rec.cell] and meta["machine"]["git_commit"] == "abc123456789"
    # The same file again is the same run folder.
    assert import_or_reuse(tmp_path / "bench.json", tmp_path / "results") == run_dir


def test_the_benchmark_summary_and_clean_rounds_are_kept(tmp_path):
    """A file written by the current benchmark carries measure_timing's own figures (from its
    clean rounds) and which rounds were clean: both are kept as they are."""
    data = _data()
    info = data["benchmarks"][0]["extra_info"]
    info |= {"median_s": 1.05e-3, "clean_rounds": 4.0, "contended": 0.0,
             "clean": [True, True, True, False, True], "stall_source": "schedstat",
             "pct_of_limit": 12.5}
    (rec,) = load_records(import_json(_write(tmp_path, data), tmp_path / "results"))
    assert rec.metrics["median_s"] == 1.05e-3 and rec.metrics["clean_rounds"] == 4.0
    assert rec.metrics["pct_of_limit"] == 12.5 and "clean" not in rec.metrics
    assert rec.raw == {"times_s": TIMES, "clean": [True, True, True, False, True]}
    assert rec.labels["stall_source"] == "schedstat"


def test_framework_variant_and_form_come_from_the_id_when_absent(tmp_path):
    data = _data()
    for key in ("framework", "variant", "form"):
        del data["benchmarks"][0]["extra_info"][key]
    (rec,) = load_records(import_json(_write(tmp_path, data), tmp_path / "results"))
    assert (rec.cell["framework"], rec.cell["variant"], rec.cell["form"]) == (
        "torch", "native", "sparse")


def _broken(path: str, value):
    """``_data()`` with the item at ``path`` (keys separated by '.', list indices as ints)
    replaced by ``value`` (or deleted for ``...``)."""
    data = copy.deepcopy(_data())
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = data
    for p in parents:
        target = target[p]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(("data", "expected"), [
    ("{not json", "cannot read pytest-benchmark JSON"),
    ([1, 2], "not a pytest-benchmark JSON file"),
    (_broken("benchmarks", ...), "no 'benchmarks'"),
    (_broken("benchmarks", {"a": 1}), "'benchmarks' must be a list"),
    (_broken("benchmarks.0", "bench"), "benchmark '#0': a benchmark is a JSON object"),
    (_broken("benchmarks.0.extra_info", ...), "no xent-bench extra_info"),
    (_broken("benchmarks.0.extra_info", [1]), "extra_info must be a JSON object"),
    (_broken("benchmarks.0.extra_info.impl", ...), "missing impl"),
    (_broken("benchmarks.0.extra_info.impl", "torch-native"), "framework/variant/form"),
    (_broken("benchmarks.0.extra_info.n", "many"), "extra_info n must be a non-negative"),
    (_broken("benchmarks.0.extra_info.c", -5), "extra_info c must be a non-negative"),
    (_broken("benchmarks.0.extra_info.seed", 0.5), "extra_info seed"),
    (_broken("benchmarks.0.extra_info.scale", "big"), "extra_info scale must be a number"),
    (_broken("benchmarks.0.extra_info.times_s", ["fast"]), "times_s"),
    (_broken("benchmarks.0.extra_info.times_s", [-1.0]), "times_s"),
    (_broken("benchmarks.0.extra_info.dtype", "float8"), "unknown dtype 'float8'"),
    (_broken("benchmarks.0.extra_info.clean", [True]), "extra_info clean must be a list"),
    (_broken("datetime", "yesterday"), "'datetime' must be an ISO 8601 time"),
    (_broken("machine_info", "box"), "machine_info must be a JSON object"),
    (_broken("machine_info.xent", 3), "machine_info.xent must be a JSON object"),
    (_broken("machine_info.cpu", "x86"), "machine_info.cpu must be a JSON object"),
    (_broken("machine_info.xent.versions", ["torch"]), "xent.versions must be a JSON object"),
    (_broken("machine_info.xent.ceilings", 5), "xent.ceilings must be a JSON object"),
    (_broken("machine_info.xent.ceilings.best.exp_Gps", ...), "ceilings.best needs positive "
                                                              "exp_Gps"),
    (_broken("commit_info", "abc"), "commit_info must be a JSON object"),
    (_broken("benchmarks.0.extra_info.median_s", -1e-3), "extra_info median_s must be "
                                                        "non-negative and finite"),
    (_broken("benchmarks.0.extra_info.clean_rounds", -3), "extra_info clean_rounds must be"),
    (_broken("benchmarks", _data()["benchmarks"] * 2), "benchmark 'test_cross_entropy"
                                                      ".*measures the same cell as benchmark"),
])
def test_a_malformed_file_is_a_value_error_naming_the_problem(tmp_path, data, expected):
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=expected) as caught:
        import_json(path, tmp_path / "results")
    assert str(path) in str(caught.value)
    assert not (tmp_path / "results").exists()  # nothing half-written


def test_benchmark_errors_name_the_benchmark(tmp_path):
    with pytest.raises(ValueError, match=r"benchmark 'test_cross_entropy\[torch-256x1000\]'"):
        import_json(_write(tmp_path, _broken("benchmarks.0.extra_info.n", "many")),
                    tmp_path / "results")


def test_the_cli_turns_a_malformed_file_into_exit_2(tmp_path, capsys):
    path = _write(tmp_path, _broken("benchmarks.0.extra_info.n", "many"))
    assert main(["report", str(path), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "extra_info n must be a non-negative integer" in err[0], err


def test_a_file_with_its_session_data_in_extra_info_imports_the_same(tmp_path):
    """Files written now keep the ceilings, commit, versions and CPUs in each benchmark's
    extra_info (machine_info holds only what is stable per machine)."""
    data = _data()
    xent = data["machine_info"]["xent"]
    del xent["ceilings"], xent["versions"]
    data["benchmarks"][0]["extra_info"] |= {"ceilings": CEILINGS, "git_commit": "fed987",
                                            "versions": {"torch": "9.8"}, "cpus": [1]}
    run_dir = import_json(_write(tmp_path, data), tmp_path / "results")
    (rec,) = load_records(run_dir)
    assert rec.metrics["pct_of_limit"] > 0
    assert rec.env["versions"] == {"torch": "9.8"} and rec.env["git_commit"] == "fed987"
    assert "ceilings" not in rec.metrics and "cpus" not in rec.metrics
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["ceilings"] == {"best": CEILINGS}


def test_bad_ceilings_in_extra_info_name_where_they_are(tmp_path):
    data = _data()
    del data["machine_info"]["xent"]["ceilings"]
    data["benchmarks"][0]["extra_info"]["ceilings"] = {"copy_GBps": -1, "read_GBps": 1,
                                                       "exp_Gps": 1}
    with pytest.raises(ValueError, match="extra_info ceilings needs positive copy_GBps"):
        import_json(_write(tmp_path, data), tmp_path / "results")
