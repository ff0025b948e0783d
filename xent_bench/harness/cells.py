"""Cells: one measurement of one implementation on one case.

A cell is a plain dict (it travels to worker processes as JSON) with the keys in ``CELL_KEYS``.
``cell_key`` names it uniquely inside a run, which is what ``--resume`` uses to skip finished
cells.
"""

from __future__ import annotations

from xent_impls import Case, Impl
from xent_impls.names import unknown_name
from xent_impls.vocabulary import KINDS, PASSES

CELL_KEYS = ("kind", "impl", "framework", "form", "variant", "n", "c", "dtype", "scale", "seed",
             "pass", "device", "probe", "world", "repeat")
# behaviour: one edge-case probe (xent_impls.edge_cases) on one implementation; semantics: one
# framework's options side by side (harness/semantics.py). Both: see harness/behaviour.py.
# ``world`` (optional): ranks of a vocabulary-parallel cell (harness/distributed.py); absent or
# None for single-process cells. ``repeat`` (optional): which repeat of the grid (a pass through
# fresh worker processes, harness/runner.py) measured the cell; absent for the first.


def make_cell(kind: str, impl: Impl, case: Case, pass_: str, device: str, probe: str = "") -> dict:
    if kind not in KINDS:
        raise ValueError(f"unknown cell kind {kind!r}; known: {', '.join(KINDS)}")
    if pass_ not in PASSES:
        raise unknown_name("pass", pass_, PASSES)
    return {
        "kind": kind,
        "impl": impl.id,
        "framework": impl.framework,
        "form": impl.form,
        "variant": impl.variant,
        "n": case.n,
        "c": case.c,
        "dtype": case.dtype,
        "scale": case.scale,
        "seed": case.seed,
        "pass": pass_,
        "device": device,
        "probe": probe,
    }


def cell_case(cell: dict) -> Case:
    return Case(cell["n"], cell["c"], cell["dtype"], cell["scale"], cell["seed"])


# Keys that join ``cell_key`` only when set, so keys of cells without them (and of run folders
# written before they existed) are unchanged.
OPTIONAL_KEYS = ("probe", "world", "repeat")


def cell_key(cell: dict) -> str:
    return "|".join(str(cell[k]) for k in CELL_KEYS
                    if k not in ("framework", "form", "variant", *OPTIONAL_KEYS) or
                    (k in OPTIONAL_KEYS and cell.get(k)))


def describe(cell: dict) -> str:
    """Short human label for progress output."""
    if cell.get("probe"):
        return f"{cell['impl']} {cell['kind']} {cell['probe']}"
    scale = f" s{cell['scale']:g}" if cell["kind"] == "agreement" else ""
    world = f" world {cell['world']}" if cell.get("world") else ""
    repeat = f" (repeat {cell['repeat'] + 1})" if cell.get("repeat") else ""
    return (f"{cell['impl']} {cell['n']}x{cell['c']} {cell['dtype']}{scale} {cell['pass']}"
            f"{world}{repeat}")


def repeated(cell: dict, repeat: int) -> dict:
    """The cell as measured by repeat ``repeat`` of the grid (0: the cell itself)."""
    return cell | {"repeat": repeat} if repeat else cell
