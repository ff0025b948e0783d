"""Number and text formatting shared by every report: significant digits, errors in eps,
ratios, sizes, case labels, and the mark for a missing value."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from xent_bench.harness.agreement import FAILING

MISSING = "–"
MiB = 2.0**20



def is_missing(v) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def fmt_num(v, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits, plain between 1e-3 and 1e6, MISSING for NaN."""
    if is_missing(v):
        return MISSING
    v = float(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    if not 1e-3 <= abs(v) < 1e6:
        return f"{v:.{digits - 1}e}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(v))), 0)
    return f"{v:.{decimals}f}"


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
    return text, "bad" if state in ("error", "oom") else ""


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
    short = {"forward": "fwd", "forward_backward": "fwd+bwd"}
    return [f"{fmt_size(n, c)} {d} {short.get(p, p)}"
            for n, c, d, p in df[["n", "c", "dtype", "pass"]].to_numpy()]


def ordered(values, order) -> list:
    """The distinct ``values``: those named in ``order`` first, in that order, then the others
    sorted."""
    present = set(values)
    return [v for v in order if v in present] + sorted(present - set(order))
