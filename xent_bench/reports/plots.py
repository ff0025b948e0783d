"""Figures of a report, drawn with matplotlib's object API (``Figure`` on the Agg canvas).

No ``pyplot``: nothing touches matplotlib's global backend or figure registry, so building a
report inside a notebook or a test leaves the caller's state alone. Generic figures;
``xent_bench.reports.run_report`` and ``xent_bench.reports.compare_report`` decide what data
goes into them:

- :func:`time_against_classes`: median time against the number of classes C (log-log), one
  line per framework with its interquartile band, a marker per implementation, one panel per
  pass and dtype;
- :func:`lines_by_framework`: a metric against C (log-log), one column of panels per framework
  (a row per pass and dtype), one line per variant (colour) and form (line style);
- :func:`lines_by_classes`: a metric against the number of classes C (log x), one line per
  implementation (colour: framework/variant, line style: dtype), one panel per pass and form;
- :func:`heatmap`: a labelled matrix (implementations down, cases across) coloured by a value;
- :func:`intervals`: one point with its interval per row (ratios of two runs; log x where they
  span more than 2x);
- :func:`trend`: values across an ordered list of runs, one line per cell, one panel per metric.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
)

from xent_bench.harness import files
from xent_bench.reports.format import ordered
from xent_impls.vocabulary import DTYPE_ORDER, FORMS, FRAMEWORKS, MEASURED_FRAMEWORKS, PASSES

DPI = 110
LINESTYLES = {"float32": "-", "bfloat16": "--", "float16": ":", "float64": "-."}
MISSING_COLOUR = "#dddddd"
FORM_LINESTYLES = {"sparse": "-", "onehot": "--"}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
# One colour per framework, the same in every figure (tab10, the measured frameworks first).
FRAMEWORK_COLOURS = {f: colormaps["tab10"](i) for i, f in enumerate(
    dict.fromkeys(MEASURED_FRAMEWORKS + FRAMEWORKS))}


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    return files.write_with(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:] or "png",
                                                          dpi=DPI, bbox_inches="tight"))


def _framework_colour(framework: str):
    return FRAMEWORK_COLOURS.get(framework, "#555555")


def _classes_axis(ax, sizes: pd.DataFrame, *, with_n: bool) -> None:
    """A log x axis with one tick at each C of ``sizes`` (columns ``n``, ``c``) and nothing in
    between; with ``with_n`` each tick names its N too (``10`` over ``(N=4096)``): a run's
    grid changes N with C, and a reader should not take the line for C alone."""
    cs = sorted(int(c) for c in sizes["c"].unique())
    n_of = sizes.drop_duplicates("c").set_index("c")["n"]
    labels = [f"{c}\n(N={int(n_of[c])})" if with_n else str(c) for c in cs]
    ax.set_xscale("log")
    ax.set_xticks(cs, labels, fontsize=8)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(cs[0] / 1.8, cs[-1] * 1.8)


def _log_values_axis(ax, values: pd.Series) -> None:
    """A log y axis labelled in plain numbers (0.1, 1, 10 rather than powers of ten): 1, 2 and
    5 of each decade where the values span three decades or less, every digit where they span
    less than a factor of 5, so that a narrow panel still has labelled ticks."""
    values = values[values > 0]
    span = math.log10(values.max() / values.min()) if len(values) else 0.0
    subs = (1.0,) if span > 3 else (1.0, 2.0, 5.0) if span > math.log10(5) else range(1, 10)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _size_rows(sizes: pd.DataFrame) -> bool:
    """Whether some C comes with several N in ``sizes``: then a line across C would mix rows
    of different N, and the figure gives each N its own panels."""
    return bool(sizes.drop_duplicates()["c"].duplicated().any())


def time_against_classes(df: pd.DataFrame, *, path: Path, title: str) -> Path | None:
    """Median time against C (log-log): one panel per pass (rows) and dtype (columns), one line
    per framework with a band from ``q1_ms`` to ``q3_ms``, and at each point a marker naming
    (in the legend) the implementation that point belongs to.

    ``df`` has one row per point: ``framework``, ``impl``, ``n``, ``c``, ``dtype``, ``pass``,
    ``median_ms``, ``q1_ms`` and ``q3_ms``; the caller picks the rows (e.g. each framework's
    fastest implementation per case). Panels of a row share the y axis, so dtypes compare
    across a row. With one N per C the ticks name the N; where a C comes with several N, each
    N gets its own row of panels (a line then holds N fixed). Returns None when nothing is
    left to draw.
    """
    df = df[df["median_ms"] > 0]
    if df.empty:
        return None
    passes = ordered(df["pass"], PASSES)
    dtypes = ordered(df["dtype"], DTYPE_ORDER)
    sizes = df[["n", "c"]].drop_duplicates()
    per_n = _size_rows(sizes)
    rows = [(p, n) for p in passes for n in (sorted(sizes["n"].unique()) if per_n else [None])]
    frameworks = ordered(df["framework"], FRAMEWORKS)
    # One marker per implementation within its framework, the same in every panel.
    marker = {}
    for fw in frameworks:
        for k, impl in enumerate(dict.fromkeys(df.loc[df["framework"] == fw, "impl"])):
            marker[impl] = MARKERS[k % len(MARKERS)]

    fig = Figure(figsize=(3.7 * len(dtypes) + 3.2, 0.4 + 2.9 * len(rows)))
    axes = fig.subplots(len(rows), len(dtypes), squeeze=False, sharex=True, sharey="row")
    for i, (pass_, n) in enumerate(rows):
        in_row = df[(df["pass"] == pass_) & ((df["n"] == n) if per_n else True)]
        for j, dtype in enumerate(dtypes):
            ax = axes[i, j]
            panel = in_row[in_row["dtype"] == dtype]
            for fw in frameworks:
                line = panel[panel["framework"] == fw].sort_values("c")
                if line.empty:
                    continue
                colour = _framework_colour(fw)
                c, med = line["c"].to_numpy(float), line["median_ms"].to_numpy(float)
                q1 = line["q1_ms"].fillna(line["median_ms"]).to_numpy(float)
                q3 = line["q3_ms"].fillna(line["median_ms"]).to_numpy(float)
                if len(line) > 1:
                    ax.fill_between(c, q1, q3, color=colour, alpha=0.22, linewidth=0)
                else:  # a band needs two points: the interval as a bar
                    ax.vlines(c, q1, q3, color=colour, alpha=0.5, linewidth=4)
                ax.plot(c, med, color=colour, linewidth=1.4)
                for x, v, impl in zip(c, med, line["impl"]):
                    ax.plot([x], [v], marker=marker[impl], color=colour, markersize=6.5,
                            markeredgecolor="white", markeredgewidth=0.7, linestyle="none")
            if panel.empty:
                ax.text(0.5, 0.5, "no clean, agreeing cell", transform=ax.transAxes,
                        ha="center", va="center", fontsize=8, color="#888888")
            _classes_axis(ax, sizes, with_n=not per_n)
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{pass_}, {dtype}" + (f", N={int(n)}" if per_n else ""), fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel("number of classes C")
            if j == 0:
                ax.set_ylabel("median time, ms")
        _log_values_axis(axes[i, 0], pd.concat([in_row["median_ms"], in_row["q1_ms"],
                                                in_row["q3_ms"]]).dropna())
    handles = [Line2D([], [], color=_framework_colour(fw), marker=marker[impl], markersize=6.5,
                      markeredgecolor="white", markeredgewidth=0.7, linewidth=1.4, label=impl)
               for fw in frameworks for impl in marker
               if df.loc[df["impl"] == impl, "framework"].iloc[0] == fw]
    handles.append(Patch(facecolor="#777777", alpha=0.3, linewidth=0,
                         label="band: q1 to q3 (IQR)"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False, title="marker: implementation", title_fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def lines_by_framework(df: pd.DataFrame, *, y: str, ylabel: str, path: Path,
                       title: str) -> Path | None:
    """``df[y]`` against C (log-log) in small multiples: one column of panels per framework,
    one row per pass and dtype, one line per variant (colour, named in a legend under its
    framework's column) and form (line style: sparse solid, one-hot dashed).

    Panels of a row share the y axis, so frameworks compare along a row. ``df`` needs
    ``framework``, ``variant``, ``form``, ``n``, ``c``, ``dtype``, ``pass`` and ``y``; rows
    without a positive ``y`` are dropped; returns None when nothing is left to draw.
    """
    df = df[df[y] > 0]
    if df.empty:
        return None
    frameworks = ordered(df["framework"], FRAMEWORKS)
    rows = [(p, d) for p in ordered(df["pass"], PASSES) for d in ordered(df["dtype"], DTYPE_ORDER)
            if ((df["pass"] == p) & (df["dtype"] == d)).any()]
    sizes = df[["n", "c"]].drop_duplicates()
    per_n = _size_rows(sizes)  # several N at one C: a line per N, ticks name C only
    variants = {fw: list(dict.fromkeys(df.loc[df["framework"] == fw, "variant"]))
                for fw in frameworks}
    cmap = colormaps["tab10"]

    fig = Figure(figsize=(3.5 * len(frameworks) + 0.6, 1.5 + 2.5 * len(rows)))
    axes = fig.subplots(len(rows), len(frameworks), squeeze=False, sharex=True, sharey="row")
    for i, (pass_, dtype) in enumerate(rows):
        in_row = df[(df["pass"] == pass_) & (df["dtype"] == dtype)]
        for j, fw in enumerate(frameworks):
            ax = axes[i, j]
            panel = in_row[in_row["framework"] == fw]
            keys = ["variant", "form"] + (["n"] if per_n else [])
            for (variant, form, *_), line in panel.groupby(keys, sort=False):
                line = line.sort_values("c")
                ax.plot(line["c"], line[y], marker="o", markersize=3,
                        linewidth=1.3, linestyle=FORM_LINESTYLES.get(form, "-."),
                        color=cmap(variants[fw].index(variant) % cmap.N))
            _classes_axis(ax, sizes, with_n=not per_n)
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{fw}: {pass_}, {dtype}", fontsize=9)
            if j == 0:
                ax.set_ylabel(ylabel, fontsize=8)
        _log_values_axis(axes[i, 0], in_row[y])
    for j, fw in enumerate(frameworks):
        ax = axes[-1, j]
        ax.set_xlabel("number of classes C")
        forms = ordered(df.loc[df["framework"] == fw, "form"], FORMS)
        handles = [Line2D([], [], color=cmap(k % cmap.N), marker="o", markersize=3, label=v)
                   for k, v in enumerate(variants[fw])]
        handles += [Line2D([], [], color="black", linestyle=FORM_LINESTYLES.get(f, "-."),
                           label=f) for f in forms]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.36), ncol=2,
                  fontsize=7.5, frameon=False, title=f"{fw} variants; forms",
                  title_fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def lines_by_classes(df: pd.DataFrame, *, y: str, ylabel: str, path: Path,
                     title: str) -> Path | None:
    """Plot ``df[y]`` against ``df["c"]`` (log-log), one panel per (pass, form).

    ``df`` needs the columns ``series`` (line label, e.g. ``torch/native``), ``dtype``, ``pass``,
    ``form``, ``c`` and ``y``. Rows with a missing ``y`` are dropped; returns None when nothing
    is left to draw.
    """
    df = df.dropna(subset=[y])
    if df.empty:
        return None
    passes = ordered(df["pass"], PASSES)
    forms = ordered(df["form"], FORMS)
    series = list(dict.fromkeys(df["series"]))  # in the caller's row order
    cmap = colormaps["tab10" if len(series) <= 10 else "tab20"]
    colour = {s: cmap(i % cmap.N) for i, s in enumerate(series)}
    dtypes = ordered(df["dtype"], DTYPE_ORDER)

    fig = Figure(figsize=(4.2 * len(forms) + 2.6, 3.2 * len(passes)))
    axes = np.atleast_2d(fig.subplots(len(passes), len(forms), squeeze=False, sharex=True))
    symlog = bool((df[y] <= 0).any())
    # With zeros (no extra memory) a log axis cannot hold them: a symmetric-log axis, linear
    # below the decade of the smallest positive value and logarithmic above, so that zero and
    # every decade of the data get a labelled tick (a fixed linear range of 1 left a small
    # positive value and zero on the same tick).
    positive = df.loc[df[y] > 0, y]
    linthresh = 10.0 ** math.floor(math.log10(positive.min())) if len(positive) else 1.0
    for i, pass_ in enumerate(passes):
        for j, form in enumerate(forms):
            ax = axes[i, j]
            panel = df[(df["pass"] == pass_) & (df["form"] == form)]
            for (name, dtype), line in panel.groupby(["series", "dtype"], sort=True):
                line = line.sort_values("c")
                ax.plot(line["c"], line[y], marker="o", markersize=3.5, linewidth=1.4,
                        color=colour[name], linestyle=LINESTYLES.get(dtype, "-"))
            ax.set_xscale("log")
            if symlog:
                ax.set_yscale("symlog", linthresh=linthresh)
                ax.set_ylim(bottom=0)
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            else:
                ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{pass_}, {form}", fontsize=9)
            if i == len(passes) - 1:
                ax.set_xlabel("number of classes C")
            if j == 0:
                ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=colour[s], marker="o", markersize=3.5, label=s) for s in series]
    if len(dtypes) > 1:
        handles += [Line2D([], [], color="black", linestyle=LINESTYLES.get(d, "-"), label=d)
                    for d in dtypes]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def heatmap(values: pd.DataFrame, labels: pd.DataFrame, *, path: Path, title: str,
            colorbar: str, cmap: str = "viridis", vmin: float | None = None,
            vmax: float | None = None, log: bool = False) -> Path | None:
    """A matrix of coloured cells, each annotated with its text from ``labels``.

    ``values`` (float) and ``labels`` (str) share index (rows) and columns. NaN is drawn grey;
    infinite values take the colour map's "over" colour (black); finite values above ``vmax``
    take its last colour.
    With ``log`` the colours follow a logarithmic scale (values are clipped to ``vmin``).
    """
    if values.empty:
        return None
    data = values.to_numpy(dtype=float)
    finite = data[np.isfinite(data)]
    vmin = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    vmax = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    vmax = max(vmax, vmin * 10 if log else vmin + 1e-9)
    if log:
        data = np.where(np.isnan(data), np.nan, np.maximum(data, vmin))
    norm = LogNorm(vmin=vmin, vmax=vmax) if log else Normalize(vmin=vmin, vmax=vmax)
    colours = colormaps[cmap].with_extremes(bad=MISSING_COLOUR, over="black")

    nrows, ncols = data.shape
    # At least 2.6 in tall: the title, the rotated column labels and the colour bar need that
    # much even for one or two rows (tight_layout cannot fit them in less).
    fig = Figure(figsize=(2.8 + 0.85 * ncols, max(2.6, 1.2 + 0.28 * nrows)))
    ax = fig.subplots()
    # Infinite values take the "over" colour (black); finite values above vmax are clipped to
    # vmax (the colour map's last colour), so a huge but finite error never looks like inf/NaN.
    shown = np.where(np.isinf(data), vmax * 10, np.minimum(data, vmax))
    image = ax.imshow(np.ma.masked_invalid(shown), cmap=colours, norm=norm, aspect="auto")
    for r in range(nrows):
        for c in range(ncols):
            value = shown[r, c]
            dark = value > vmax or (np.isfinite(value) and _is_dark(colours(norm(value))))
            ax.text(c, r, labels.iat[r, c], ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(ncols), [str(c) for c in values.columns], rotation=35, ha="right",
                  fontsize=8)
    ax.set_yticks(range(nrows), [str(i) for i in values.index], fontsize=8)
    fig.colorbar(image, ax=ax, label=colorbar, extend="max", shrink=0.8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _is_dark(rgba) -> bool:
    r, g, b = rgba[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b < 0.5


# The ratio ticks of a log axis, tier by tier: the mantissas of each decade that get a tick.
# The densest tier whose labels fit the axis width is drawn (a fixed list put 0.2x, 0.3x and
# 0.5x, 0.7x, 1x, 1.5x side by side on a wide range, and the labels ran into each other).
RATIO_TIERS = ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 3, 4, 5, 6, 7, 8, 9))
# Ratios spanning more than this factor get a log axis (0.5x and 2x equally far from 1x);
# a narrower range reads as well on a linear axis, which gets more labelled ticks.
RATIO_LOG_SPAN = 2.0
# Text sizes and the estimate of a label's width: DejaVu Sans averages about 0.6 em a character.
LABEL_FONTSIZE = 8.0
TICK_FONTSIZE = 8.0
CHAR_EM = 0.62
TICK_GAP_IN = 0.12
ROW_HEIGHT_IN = 0.25  # a row per cell: about twice the height of its 8 pt label
AXES_WIDTH_IN = 5.0


def _text_width_in(text: str, fontsize: float) -> float:
    return len(text) * fontsize * CHAR_EM / 72


def _ratio_label(t: float) -> str:
    return f"{t:.10g}x"


def ratio_ticks(low: float, high: float, width_in: float,
                fontsize: float = TICK_FONTSIZE) -> list[float]:
    """Ticks for a log ratio axis from ``low`` to ``high`` drawn ``width_in`` inches wide: the
    densest of :data:`RATIO_TIERS` whose labels (``0.5x``, ``1x``, ``2x``...) leave a gap
    between neighbours; where even one tick a decade is too dense, every second (third...)
    decade, keeping 1x."""
    lo_log, span = math.log10(low), math.log10(high / low)

    def fits(ticks: list[float]) -> bool:
        x = [(math.log10(t) - lo_log) / span * width_in for t in ticks]
        w = [_text_width_in(_ratio_label(t), fontsize) for t in ticks]
        return all(x[i + 1] - x[i] >= (w[i] + w[i + 1]) / 2 + TICK_GAP_IN
                   for i in range(len(ticks) - 1))

    decades = range(math.floor(lo_log) - 1, math.ceil(math.log10(high)) + 1)

    def tier_ticks(mantissas, every: int = 1) -> list[float]:
        return sorted({round(m * 10.0 ** d, 12) for d in decades if d % every == 0
                       for m in mantissas if low <= m * 10.0 ** d <= high})

    chosen = None
    for tier in RATIO_TIERS:
        ticks = tier_ticks(tier)
        if not fits(ticks):
            break
        chosen = ticks
    every = 2
    while chosen is None:
        ticks = tier_ticks((1,), every)
        chosen = ticks if fits(ticks) or len(ticks) <= 2 else None
        every += 1
    return chosen


def intervals(df: pd.DataFrame, *, path: Path, title: str, xlabel: str, band: tuple[float, float],
              cuts: tuple[float, float], colours: dict[str, str]) -> Path | None:
    """A forest plot: one row per ``df`` row (label ``label`` on the y axis), the point
    ``ratio`` and the interval [``lo``, ``hi``], coloured by ``verdict`` (``colours``).

    The x axis is logarithmic (``, log scale`` is added to ``xlabel``) where the drawn range
    spans more than :data:`RATIO_LOG_SPAN`, linear otherwise; ticks read ``0.5x``, ``1x``,
    ``2x`` and are spaced so that their labels never touch. The figure grows with the rows
    (:data:`ROW_HEIGHT_IN` each) and with the longest label, so the axes keep their width.
    ``band`` is shaded (e.g. the "same" range), ``cuts`` are drawn as dashed lines (e.g. the
    bounds an interval must clear to count as a change). Rows without a ratio are dropped.
    """
    df = df[df["ratio"] > 0].reset_index(drop=True)  # NaN compares False: dropped too
    if df.empty:
        return None
    labels = [str(v) for v in df["label"]]
    label_in = max(_text_width_in(t, LABEL_FONTSIZE) for t in labels)
    legend_in = 0.5 + max(_text_width_in(str(v), 8) for v in df["verdict"])
    fig = Figure(figsize=(label_in + AXES_WIDTH_IN + legend_in + 0.4,
                          1.3 + ROW_HEIGHT_IN * len(df)))
    ax = fig.subplots()
    y = np.arange(len(df))[::-1]
    lo = df["lo"].fillna(df["ratio"]).to_numpy()
    hi = df["hi"].fillna(df["ratio"]).to_numpy()
    ratio = df["ratio"].to_numpy()
    for verdict in dict.fromkeys(df["verdict"]):
        sel = (df["verdict"] == verdict).to_numpy()
        xerr = [np.clip(ratio[sel] - lo[sel], 0, None), np.clip(hi[sel] - ratio[sel], 0, None)]
        ax.errorbar(ratio[sel], y[sel], xerr=xerr, fmt="o", markersize=4, capsize=2.5,
                    linewidth=1.2, color=colours.get(verdict, "black"), label=verdict)
    ax.axvspan(*band, color="#dddddd", alpha=0.6, linewidth=0)
    for cut in cuts:
        ax.axvline(cut, color="#888888", linestyle="--", linewidth=0.9)
    ax.axvline(1.0, color="black", linewidth=0.8)
    low = min(float(np.nanmin(lo)), min(band), min(cuts))
    high = max(float(np.nanmax(hi)), max(band), max(cuts))
    log = high > RATIO_LOG_SPAN * low
    if log:
        ax.set_xscale("log")
        low, high = low / 1.15, high * 1.15
    else:
        pad = 0.06 * (high - low)
        low, high = low - pad, high + pad
    ax.set_xlim(low, high)
    ax.set_yticks(y, labels, fontsize=LABEL_FONTSIZE)
    ax.set_ylim(-0.7, len(df) - 0.3)
    ax.set_xlabel(xlabel + (", log scale" if log else ""))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    # Ticks for the axes' width after the layout (the labels on the left take their share).
    width_in = ax.get_position().width * fig.get_figwidth()
    if log:
        ticks = ratio_ticks(low, high, width_in)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
    else:
        longest = _text_width_in(_ratio_label(round(high, 3)), TICK_FONTSIZE) + TICK_GAP_IN
        ax.xaxis.set_major_locator(MaxNLocator(nbins=max(2, int(width_in / (longest + 0.2))),
                                               steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _ratio_label(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=TICK_FONTSIZE)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    return _save(fig, path)


# A trend panel whose values span more than this factor gets a log axis.
TREND_LOG_RANGE = 10.0


def trend(df: pd.DataFrame, *, runs: list[str], panels: list[tuple[str, str]], path: Path,
          title: str) -> Path | None:
    """Values across the ordered ``runs`` (x axis), one line per ``series``, one panel per
    ``(column, ylabel)`` in ``panels``.

    ``df`` is long: columns ``series``, ``run`` (one of ``runs``) and the panel columns; a panel
    column ``y`` may come with ``y_lo`` / ``y_hi`` columns, drawn as error bars (e.g. q1 and q3).
    Panels without any value are left out; returns None when nothing is left to draw.
    """
    panels = [(y, label) for y, label in panels if y in df and df[y].notna().any()]
    if df.empty or not panels:
        return None
    position = {r: i for i, r in enumerate(runs)}
    series = list(dict.fromkeys(df["series"]))
    cmap = colormaps["tab10" if len(series) <= 10 else "tab20"]
    fig = Figure(figsize=(max(5.0, 1.2 + 0.9 * len(runs)) + 3.2, 2.9 * len(panels)))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0])
    for ax, (y, ylabel) in zip(axes, panels):
        for i, name in enumerate(series):
            line = df[(df["series"] == name) & df[y].notna()]
            if line.empty:
                continue
            x = line["run"].map(position).to_numpy()
            order = np.argsort(x)
            values = line[y].to_numpy()[order]
            err = None
            if f"{y}_lo" in line and f"{y}_hi" in line:
                err = [np.nan_to_num(np.clip(values - line[f"{y}_lo"].to_numpy()[order], 0,
                                             None)),
                       np.nan_to_num(np.clip(line[f"{y}_hi"].to_numpy()[order] - values, 0,
                                             None))]
            ax.errorbar(x[order], values, yerr=err, marker="o", markersize=3.5, linewidth=1.3,
                        capsize=2.5, color=cmap(i % cmap.N), label=name)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        drawn = df[y].dropna()
        if (drawn > 0).all() and drawn.max() > TREND_LOG_RANGE * drawn.min():
            # One outlier (a run 100x slower) would flatten every other line on a linear axis.
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
    axes[-1].set_xticks(range(len(runs)), runs, fontsize=8)
    axes[-1].set_xlabel("run (in the order given)")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
