"""``xent-bench report``: rebuild the reports of a run folder, or turn a pytest-benchmark JSON
file into a run folder and report it."""

from __future__ import annotations

import sys
from pathlib import Path

from xent_bench.commands.options import report_module, usage_errors
from xent_bench.harness.pytest_import import import_json


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "report", help="rebuild the reports of a run folder, or build a run folder and its "
                       "reports from a pytest-benchmark JSON file")
    p.add_argument("run_folder", type=Path, metavar="RUN_FOLDER_OR_JSON")
    p.add_argument("--results", type=Path, default=Path("results"),
                   help="where a pytest-benchmark JSON becomes a run folder (default: results)")
    p.set_defaults(func=command)


def command(args) -> int:
    run_report = report_module("run_report")
    run_folder = args.run_folder
    with usage_errors():
        if run_folder.suffix == ".json":
            run_folder = import_json(run_folder, args.results)
            print(f"run folder: {run_folder}", file=sys.stderr)
        run = run_report.load_run(run_folder)
    written = run_report.write_run_reports(run)
    print("\n".join(written["summary"]))
    print(f"report: {written['markdown']} (also report.html)", file=sys.stderr)
    return 0
