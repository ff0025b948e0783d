"""Number and text formatting shared by every report: significant digits, errors in eps,
ratios, byte sizes, case labels, and the mark for a missing value. Every report formats its
numbers with these functions (and writes its tables with ``reports.document``)."""

from __future__ import annotations

import math

import pandas as pd

from xent_bench.analysis.compare_stats import DID_NOT_RUN, is_missing
from xent_bench.harness.agreement import FAILING
from xent_impls.vocabulary import PASSES

MISSING = "–"
KiB = 2.0**10
MiB = 2.0**20
GiB = 2.0**30
BYTE_UNITS = {"B": 1.0, "KiB": KiB, "MiB": MiB, "GiB": GiB}
# Short names of the passes in case labels.
PASS_SHORT = dict(zip(PASSES, ("fwd", "fwd+bwd")))


def fmt_num(v, digits: int = 3, *, trim: bool = False) -> str:
    """``v`` to ``digits`` significant digits, plain between 1e-3 and 1e6, MISSING for NaN or
    None. ``trim`` drops trailing zeros (``8.00`` -> ``8``, ``0.500`` -> ``0.5``), for prose
    and compact tables."""
    if is_missing(v):
        return MISSING
    v = float(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    if not 1e-3 <= abs(v) < 1e6:
        mantissa, exponent = f"{v:.{digits - 1}e}".split("e")
        return (_trim(mantissa) if trim else mantissa) + "e" + exponent
    decimals = max(digits - 1 - math.floor(math.log10(abs(v))), 0)
    text = f"{v:.{decimals}f}"
    return _trim(text) if trim else text


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_bytes(v, unit: str = "MiB", digits: int = 3, *, trim: bool = False) -> str:
    """A size in bytes as a number of ``unit`` (``B``, ``KiB``, ``MiB`` or ``GiB``; the number
    only: the column or the sentence names the unit), formatted by :func:`fmt_num`."""
    if is_missing(v):
        return MISSING
    return fmt_num(float(v) / BYTE_UNITS[unit], digits, trim=trim)


def fmt_eps(v) -> str:
    """An error in units of eps: one decimal below 10, whole numbers above."""
    if is_missing(v) or math.isinf(v) or abs(v) >= 1e4:
        return fmt_num(v, 2)
    return f"{v:.1f}" if abs(v) < 10 else f"{v:.0f}"


def fmt_ratio(v) -> str:
    """A ratio such as a speedup: two decimals, two significant digits below 0.1."""
    if is_missing(v) or not math.isfinite(v):
        return MISSING
    return f"{v:.2f}x" if v >= 0.1 or v == 0 else f"{fmt_num(v, 2)}x"


def n_cells(count: int) -> str:
    """``1 cell``, ``3 cells``."""
    return f"{count} cell" + ("" if count == 1 else "s")


def fmt_size(n, c) -> str:
    return f"{int(n)}x{int(c)}"


def impl_list(ids) -> str:
    return ", ".join(f"`{i}`" for i in ids)


def first_clause(text: str) -> str:
    return text.split(": ", 1)[0]


def verdict_text(state: str, loss, grad, expected: bool) -> tuple[str, str]:
    """Text and mark of one judged cell, e.g. ``("pass 2.1/0.5", "")`` or ``("FAIL inf",
    "bad")``; the errors are loss/grad in eps (grad left out when the cell has none)."""
    errs = fmt_eps(loss) + ("" if is_missing(grad) else f"/{fmt_eps(grad)}")
    text = {"pass": f"pass {errs}", "as-native": f"as-native {errs}", "fail": f"FAIL {errs}"}.get(
        state, state)
    if state in FAILING:
        return (f"{text} (expected)", "expected") if expected else (text, "bad")
    return text, "bad" if state in DID_NOT_RUN else ""


def impl_label(impl: str, expected: bool) -> str:
    return f"{impl} (meant to fail)" if expected else impl


def distinct(values) -> str:
    seen = sorted({str(v) for v in values if not is_missing(v) and v != ""})
    return "; ".join(seen) if seen else MISSING


def case_label(r: dict) -> str:
    scale = f" scale {r['scale']:g}" if r.get("kind") == "agreement" else ""
    return f"{fmt_size(r['n'], r['c'])} {r['dtype']}{scale}"


def case_columns(df: pd.DataFrame) -> list[str]:
    """Short case labels of timing cells, e.g. ``256x1000 float32 fwd+bwd``."""
    return [f"{fmt_size(n, c)} {d} {PASS_SHORT.get(p, p)}"
            for n, c, d, p in df[["n", "c", "dtype", "pass"]].to_numpy()]


def ordered(values, order) -> list:
    """The distinct ``values``: those named in ``order`` first, in that order, then the others
    sorted."""
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order))
