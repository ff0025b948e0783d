"""Behaviour under bad input: the probe runner, crash containment, and the behaviour report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xent_impls
from xent_bench.cli import main
from xent_bench.harness import behaviour, messages, runner
from xent_bench.harness.records import Record, append_record, load_records
from xent_bench.reports import behaviour_report
from xent_bench.reports import run_report as report
from xent_impls import edge_cases

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "tests" / "plugins"  # test-only implementations (XENT_IMPLS_PLUGINS)

# The catalogue covers every case the issue lists.
REQUIRED_PROBES = {
    "label-eq-C", "label-far-above-C", "label-negative", "label-minus-100", "float-labels",
    "int32-labels", "uint8-labels", "baseline", "labels-N-by-1", "batch-mismatch",
    "batch-of-1-targets", "nan-logit", "posinf-logit", "neginf-mask", "neginf-on-target",
    "neginf-whole-row", "huge-logits", "empty-batch", "one-class", "extra-axis",
    "onehot-rows-not-1", "multi-hot", "soft-labels", "probabilities-as-logits",
    "label-eq-C-batch-256",
}


def test_catalogue_covers_the_required_cases_and_makes_consistent_inputs():
    names = [p.name for p in edge_cases.PROBES]
    assert len(names) == len(set(names))
    assert REQUIRED_PROBES <= set(names)
    for probe in edge_cases.PROBES:
        for form in probe.forms:
            logits, targets = probe.make(form)
            assert logits.dtype == np.float32, probe.name
            oracle = probe.oracle(form)
            assert (oracle is None) == (not probe.defined)
            if oracle is not None:
                loss, grad = oracle
                assert grad.shape == logits.shape, probe.name
                assert loss.size == int(np.prod(logits.shape[:-1])), probe.name
    assert edge_cases.get("uint8-labels").make("sparse")[1].dtype == np.uint8
    assert edge_cases.get("labels-N-by-1").make("sparse")[1].shape == (8, 1)
    with pytest.raises(ValueError, match="unknown probe 'nope'"):
        edge_cases.get("nope")


def _numpy_result(impl_id: str, probe_name: str) -> tuple[dict, dict]:
    return behaviour.run_probe(xent_impls.get(impl_id), edge_cases.get(probe_name))


@pytest.mark.parametrize(("impl_id", "probe", "outcome", "found"), [
    ("numpy/reference/sparse", "baseline", "ok", "value"),
    ("numpy/reference/sparse", "label-eq-C", "error", "exception"),
    ("numpy/reference/sparse", "nan-logit", "silent", "nan"),
    ("numpy/reference/sparse", "neginf-on-target", "accepted", "inf"),
    ("numpy/reference/onehot", "multi-hot", "accepted", "value"),
    ("numpy/reference/onehot", "probabilities-as-logits", "wrong", "value"),
    ("numpy/reference/onehot", "empty-batch", "ok", "value"),
])
def test_run_probe_classifies_the_behaviour(impl_id, probe, outcome, found):
    metrics, labels = _numpy_result(impl_id, probe)
    assert labels["outcome"] == outcome, labels
    assert labels["behaviour"] == found, labels
    if outcome == "error":
        assert labels["exception"] == "ValueError"
        assert "label 5 is out of range" in labels["message"]


def _probe_record(status: str, **fields) -> Record:
    """A record of the baseline probe on the NumPy reference (what ``cell_text`` reads)."""
    (cell,) = [c for c in behaviour.build_cells([xent_impls.get("numpy/reference/sparse")],
                                                semantics=False) if c["probe"] == "baseline"]
    return Record(run_id="r", cell=cell, status=status, **fields)


def test_classify_wrong_gradient_shape_and_silent_value():
    probe = edge_cases.get("multi-hot")
    logits, targets = probe.make("onehot")
    ref_loss, ref_grad = probe.oracle("onehot")
    # TensorFlow's fused op: the right loss with the gradient softmax - t.
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    metrics, labels = behaviour.classify(probe, "onehot", logits, ref_loss.astype(np.float32),
                                         ((p - targets) / len(logits)).astype(np.float32))
    assert labels["outcome"] == "wrong"
    assert metrics["loss_err_eps"] < 1 and metrics["grad_err_eps"] > 1e6
    text, mark = behaviour_report.cell_text(_probe_record("ok", labels=labels, metrics=metrics))
    assert text.startswith("SILENT wrong gradient off by") and mark == "bad"

    _, labels = behaviour.classify(probe, "onehot", logits, np.zeros((2, 5)), ref_grad)
    assert labels["outcome"] == "wrong-shape"
    undefined = edge_cases.get("label-eq-C")
    _, labels = behaviour.classify(undefined, "sparse", logits, np.ones(8), np.zeros((8, 5)))
    assert (labels["outcome"], labels["behaviour"]) == ("silent", "value")


@pytest.mark.parametrize(("message", "text"), [
    ("worker killed by signal SIGABRT: terminate called | what(): kernel, /tmp/torchinductor_u/"
     "ab/x.main.cpp:70, index out of bounds: 0 <= tmp21 < 5L", "ABORTED (SIGABRT)"),
    ("worker killed by signal SIGSEGV", "ABORTED (SIGSEGV)"),
    ("worker timed out after 300 s and was killed", "HUNG (killed after 300 s)"),
    ("worker exited with status 3: boom", "process exited (status 3)"),
])
def test_worker_deaths_become_behaviours(message, text):
    rec = _probe_record("error", error=message)
    assert behaviour_report.cell_text(rec) == (text, "bad")
    death = behaviour_report.worker_death(message)
    if "what()" in message:
        assert death[1] == "kernel, (generated kernel), index out of bounds: 0 <= tmp21 < 5L"


def test_clean_message_keeps_the_point():
    assert messages.clean_message(
        "{{function_node __wrapped__X_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
        "Received a label value of 5") == "Received a label value of 5"
    assert messages.clean_message(
        "RuntimeError when making fake tensor call Explanation: Dynamo failed to run FX node "
        "with fake tensors: call_function <function cross_entropy at 0x7f>(*(FakeTensor(..., "
        "size=(8, 5)),)): got ValueError('Expected input batch_size (8) to match target "
        "batch_size (6).') from user code") == (
        "while tracing: ValueError: Expected input batch_size (8) to match target batch_size (6).")


def _table_cells(markdown: str, start: str, end: str | None) -> list[list[str]]:
    """Body cells of every Markdown table between two headings."""
    section = markdown.split(start, 1)[1]
    if end:
        section = section.split(end, 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|:"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            rows.append(cells)
    return rows


def _assert_no_blank_cells(markdown: str, start: str, end: str | None) -> list[list[str]]:
    rows = _table_cells(markdown, start, end)
    assert rows, f"no table after {start!r}"
    for row in rows:
        assert all(c and c != report.MISSING for c in row), row
    return rows


def test_report_of_a_synthetic_run_fills_every_cell(tmp_path):
    """Records from in-process NumPy probes, one worker death and one missing record."""
    impls = [xent_impls.get("numpy/reference/sparse"), xent_impls.get("numpy/reference/onehot")]
    cells = behaviour.build_cells(impls, semantics=False)
    meta = runner.new_meta("behaviour", device="cpu", threads=1, allocator="default",
                           budget_s=0.0, min_rounds=0, max_rounds=0, preset="behaviour",
                           cells=cells, notes=[])
    run_dir = tmp_path / meta["run_id"]
    run_dir.mkdir()
    runner.write_meta(run_dir, meta)
    env = {"versions": {"numpy": np.__version__}, "device_name": "cpu", "threads": 1}
    for cell in cells:
        if cell["probe"] == "soft-labels":
            continue  # no record: an interrupted run
        if cell["probe"] == "label-eq-C-batch-256":
            append_record(run_dir, Record(run_id=meta["run_id"], cell=cell, status="error",
                                          error="worker killed by signal SIGABRT: what(): boom",
                                          env=env))
            continue
        metrics, labels, raw = behaviour.measure_behaviour(xent_impls.get(cell["impl"]), cell, {})
        append_record(run_dir, Record(run_id=meta["run_id"], cell=cell, status="ok",
                                      metrics=metrics, labels=labels, raw=raw, env=env))
    written = report.write_reports(run_dir)
    full = written["behaviour"].read_text()
    rows = _assert_no_blank_cells(full, "## Per framework", "## Probe catalogue")
    text = " ".join(" ".join(r) for r in rows)
    for phrase in ("ABORTED (SIGABRT)", "not run (no record)", "n/a (sparse form only)",
                   "n/a (one-hot form only)", "raises ValueError: label 5 is out of range",
                   "SILENT NaN in 1 loss row", "accepted, as meant"):
        assert phrase in text, phrase
    _assert_no_blank_cells(full, "### What each framework does", "### Findings")
    main_md = written["markdown"].read_text()
    assert "[behaviour.md](behaviour.md)" in main_md
    assert "## Behaviour under bad input" in main_md
    html = (run_dir / "behaviour.html").read_text()
    assert 'class="bad"' in html and 'class="clean"' in html and 'class="warn"' in html
    assert "No semantics records" in full


def test_agreement_report_links_a_behaviour_report_in_its_folder(tmp_path):
    meta = runner.new_meta("agreement", device="cpu", threads=1, allocator="default",
                           budget_s=0.0, min_rounds=0, max_rounds=0, preset="agreement",
                           cells=[], notes=[])
    runner.write_meta(tmp_path, meta)
    (tmp_path / "behaviour.md").write_text("# behaviour\n")
    written = report.write_reports(tmp_path)
    assert "[behaviour.md](behaviour.md)" in written["markdown"].read_text()


@pytest.mark.parametrize(("args", "expected"), [
    (["behaviour", "--probe", "nope"], "unknown probe 'nope'"),
    (["behaviour", "--impl", "torch/nativ/sparse"], "Did you mean: torch/native/sparse"),
    (["behaviour", "--device", "tpu"], "unknown device 'tpu'"),
])
def test_behaviour_cli_bad_input_is_one_line_and_exit_2(args, expected, capsys, tmp_path):
    assert main([*args, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_resume_refuses_a_folder_of_another_kind(capsys, tmp_path):
    meta = runner.new_meta("timing", device="cpu", threads=1, allocator="default", budget_s=0.1,
                           min_rounds=1, max_rounds=1, preset="smoke", cells=[], notes=[])
    runner.write_meta(tmp_path, meta)
    assert main(["behaviour", "--resume", str(tmp_path)]) == 2
    assert "is a timing run, not a behaviour run" in capsys.readouterr().err


def test_aborting_probes_run_last_in_their_framework():
    cells = behaviour.build_cells([xent_impls.get("numpy/reference/sparse")], semantics=False)
    assert cells[-1]["probe"] == "label-eq-C-batch-256"
    assert {c["kind"] for c in cells} == {"behaviour"}


# --- a real run: worker processes, a real abort, every framework ---------------------------------


@pytest.mark.slow
def test_real_behaviour_run_contains_crashes_and_reports_every_cell(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), str(REPO), env.get("PYTHONPATH", "")])
    env["XENT_IMPLS_PLUGINS"] = "fault_impls"
    impls = ["numpy/reference/sparse", "numpy/abort-on-bad-label/sparse", "torch/native/sparse",
             "torch/compiled/sparse", "jax/optax/sparse", "tensorflow/native/sparse",
             "tensorflow/native/onehot"]
    probes = ["baseline", "label-eq-C", "label-eq-C-batch-256", "nan-logit", "multi-hot"]
    args = [sys.executable, "-m", "xent_bench", "behaviour", "--results", str(tmp_path),
            "--no-progress"]
    for i in impls:
        args += ["--impl", i]
    args += ["--probe", ",".join(probes)]
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    records = load_records(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert len(records) == len(meta["cells"])
    by = {(r.cell["impl"], r.cell["probe"]): r for r in records}

    # The test-only implementation aborts on an out-of-range label: a behaviour, and the run
    # went on (its baseline and the later probes have records).
    for probe in ("label-eq-C", "label-eq-C-batch-256"):
        rec = by[("numpy/abort-on-bad-label/sparse", probe)]
        assert rec.status == "error" and "SIGABRT" in rec.error
        assert behaviour_report.cell_text(rec)[0] == "ABORTED (SIGABRT)"
    assert by[("numpy/abort-on-bad-label/sparse", "baseline")].labels["outcome"] == "ok"
    # torch.compile's kernel aborts here too once its rows run in parallel (2+ threads); on a
    # machine where it raises instead, it must at least not answer silently.
    compiled = by[("torch/compiled/sparse", "label-eq-C-batch-256")]
    assert behaviour_report.cell_outcome(compiled) in ("aborted", "error")
    # Native behaviours.
    assert by[("torch/native/sparse", "label-eq-C")].labels["exception"] == "IndexError"
    assert by[("jax/optax/sparse", "label-eq-C")].labels["outcome"] == "silent"
    assert by[("tensorflow/native/sparse", "label-eq-C")].labels["exception"] == \
        "InvalidArgumentError"
    tf_multi = by[("tensorflow/native/onehot", "multi-hot")]
    assert tf_multi.labels["outcome"] == "wrong" and tf_multi.metrics["grad_err_eps"] > 1e6
    for impl in impls:
        assert by[(impl, "baseline")].labels["outcome"] == "ok", impl

    full = (run_dir / "behaviour.md").read_text()
    rows = _assert_no_blank_cells(full, "## Per framework", "## Probe catalogue")
    assert len(rows) == 4 * (1 + len(probes))  # header + probes; numpy, torch, jax, tensorflow
    _assert_no_blank_cells(full, "### What each framework does", "### Findings")
    assert "ABORTED (SIGABRT)" in full
    semantics_rows = _table_cells(full, "## Semantics side by side",
                                  "### Is categorical cross-entropy")
    assert any("= weighted mean" in " ".join(r) for r in semantics_rows)
    assert any("= over N" in " ".join(r) for r in semantics_rows)
    assert "[behaviour.md](behaviour.md)" in (run_dir / "report.md").read_text()
