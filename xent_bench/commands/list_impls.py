"""``xent-bench list``: the implementations (installed or not) and the presets."""

from __future__ import annotations

import xent_impls
from xent_bench.harness.presets import PRESETS


def add_parsers(sub) -> None:
    p = sub.add_parser("list", help="list implementations and presets")
    p.set_defaults(func=command)


def command(args) -> int:
    print("Implementations (installed: yes/no)")
    for impl in xent_impls.all_impls():
        mark = "yes" if impl.installed else "no "
        fail = "  [meant to fail in some cases]" if impl.expected_failure else ""
        print(f"  {mark}  {impl.id:34s} {impl.description}{fail}")
    print("\nPresets")
    for p in PRESETS.values():
        print(f"  {p.name:16s} ({p.kind}) {p.description}")
    for note in xent_impls.skipped_notes():
        print(f"\nnote: {note}")
    return 0
