"""The command line on the base install (numpy and ml_dtypes only): ``--help`` of every
subcommand and ``list`` work without the report libraries and without TensorFlow, building the
parser imports no framework, and a command that needs the reports says in one line what to
install (exit status 2).

The base install is simulated in a fresh interpreter: every finder on ``sys.meta_path`` is
wrapped so that it does not see the hidden packages, exactly as if they were not installed
(``import pandas`` raises ``ModuleNotFoundError``, ``importlib.util.find_spec("tensorflow")`` is
None). PyTorch and JAX stay visible, so "no framework imported" is a real check for them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xent_bench.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
HIDDEN = ("pandas", "matplotlib", "pyarrow", "tensorflow", "tqdm")
FRAMEWORKS = ("torch", "jax", "tensorflow")

# Runs in the child: hide HIDDEN, build the parser, then run each argument list of argv[1]
# (JSON) through xent_bench.cli.main, and print one JSON object with what happened.
CHILD = r"""
import contextlib, io, json, sys

HIDDEN = set(json.loads(sys.argv[2]))
FRAMEWORKS = json.loads(sys.argv[3])
ASKED = []


class Hide:
    # A finder that does not find the hidden packages; everything else goes to the one it wraps.
    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            ASKED.append(name)
            return None
        find = getattr(self._finder, "find_spec", None)
        return None if find is None else find(name, path, target)

    def __getattr__(self, attr):
        return getattr(self._finder, attr)


sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
for name in list(sys.modules):
    if name.partition(".")[0] in HIDDEN:
        del sys.modules[name]

import argparse
import xent_bench.cli as cli

parser = cli.build_parser()
(sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
watched = sorted(HIDDEN | set(FRAMEWORKS))
result = {
    "commands": list(sub.choices),
    "imported_by_parser": [m for m in watched if m in sys.modules],
    "asked_by_parser": sorted(set(ASKED)),
    "runs": [],
}
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(args)
        except SystemExit as exc:  # --help exits through argparse
            code = exc.code
    result["runs"].append({"args": args, "code": code, "out": out.getvalue(),
                           "err": err.getvalue()})
result["imported_at_end"] = [m for m in watched if m in sys.modules]
print(json.dumps(result))
"""


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def _run_child(argv_lists: list[list[str]], cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XENT_IMPLS_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argv_lists), json.dumps(HIDDEN),
         json.dumps(FRAMEWORKS)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def base_install(tmp_path_factory) -> dict:
    """What the command line did with the report libraries and TensorFlow hidden."""
    tmp = tmp_path_factory.mktemp("base-install")
    run_folder = tmp / "20260101-000000-timing-000000"
    run_folder.mkdir()
    (run_folder / "meta.json").write_text(json.dumps({"run_id": run_folder.name,
                                                      "kind": "timing"}))
    (run_folder / "records.jsonl").write_text("")
    commands = _subcommands(build_parser())
    argv_lists = ([["--help"], ["list"]] + [[name, "--help"] for name in commands]
                  + [["report", str(run_folder)],
                     ["merge", str(run_folder), str(run_folder), "--out", str(tmp / "merged")]])
    result = _run_child(argv_lists, tmp)
    result["runs"] = {" ".join(r["args"]).replace(str(run_folder), "RUN"): r
                      for r in result["runs"]}
    result["expected_commands"] = commands
    return result


def test_every_command_module_adds_a_subcommand():
    parser = build_parser()
    names = _subcommands(parser)
    assert names and len(names) == len(set(names))
    for module in COMMANDS:  # each module adds at least one subcommand of its own
        probe = argparse.ArgumentParser()
        module.add_parsers(probe.add_subparsers())
        assert set(_subcommands(probe)) <= set(names), module.__name__
        assert _subcommands(probe), module.__name__


def test_building_the_parser_imports_no_framework_and_no_report_library(base_install):
    assert base_install["commands"] == base_install["expected_commands"]
    assert base_install["imported_by_parser"] == []
    # Not even tried (an import attempt inside a try/except would hide a lazy import gone eager).
    assert base_install["asked_by_parser"] == []


def test_help_and_list_work_on_the_base_install(base_install):
    runs = base_install["runs"]
    top = runs["--help"]
    assert top["code"] == 0, top["err"]
    assert top["out"].startswith("usage: xent-bench")
    for name in base_install["commands"]:
        assert name in top["out"]
        run = runs[f"{name} --help"]
        assert run["code"] == 0, (name, run["err"])
        assert run["out"].startswith(f"usage: xent-bench {name}"), (name, run["out"][:200])
        assert run["err"] == "", (name, run["err"])
    listed = runs["list"]
    assert listed["code"] == 0, listed["err"]
    assert "Implementations" in listed["out"] and "Presets" in listed["out"]
    assert "numpy/reference/sparse" in listed["out"]
    assert "tensorflow: skipped, not installed" in listed["out"]


def test_no_framework_is_imported_by_help_or_list(base_install):
    assert not set(base_install["imported_at_end"]) & set(FRAMEWORKS)


@pytest.mark.parametrize(("command", "missing"), [("report RUN", "writing reports needs pandas"),
                                                  ("merge RUN RUN", "comparing runs needs pandas")])
def test_a_command_that_needs_the_reports_names_the_install(base_install, command, missing):
    (run,) = [r for args, r in base_install["runs"].items() if args.startswith(command)]
    assert run["code"] == 2
    lines = run["err"].strip().splitlines()
    assert len(lines) == 1, run["err"]
    assert missing in lines[0]
    assert "pip install 'xent-bench[report]'" in lines[0]
