"""Figures of a report, drawn with matplotlib's object API (``Figure`` on the Agg canvas).

No ``pyplot``: nothing touches matplotlib's global backend or figure registry, so building a
report inside a notebook or a test leaves the caller's state alone. Generic figures;
``xent_bench.reports.run_report`` and ``xent_bench.reports.compare_report`` decide what data
goes into them:

- :func:`lines_by_classes`: a metric against the number of classes C (log x), one line per
  implementation (colour: framework/variant, line style: dtype), one panel per pass and form;
- :func:`heatmap`: a labelled matrix (implementations down, cases across) coloured by a value;
- :func:`intervals`: one point with its interval per row (ratios of two runs, log x);
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
from matplotlib.ticker import FuncFormatter, NullFormatter

from xent_bench.harness import files
from xent_bench.reports.format import ordered
from xent_impls.vocabulary import DTYPE_ORDER, FORMS, PASSES

DPI = 110
LINESTYLES = {"float32": "-", "bfloat16": "--", "float16": ":", "float64": "-."}
MISSING_COLOUR = "#dddddd"
RATIO_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 20, 50, 100)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    return files.write_with(path, lambda tmp: fig.savefig(tmp, format=path.suffix[1:] or "png",
                                                          dpi=DPI, bbox_inches="tight"))


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
    fig = Figure(figsize=(2.8 + 0.85 * ncols, 1.2 + 0.28 * nrows))
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


def intervals(df: pd.DataFrame, *, path: Path, title: str, xlabel: str, band: tuple[float, float],
              cuts: tuple[float, float], colours: dict[str, str]) -> Path | None:
    """A forest plot: one row per ``df`` row (label ``label``), the point ``ratio`` and the
    interval [``lo``, ``hi``] on a log x axis, coloured by ``verdict`` (``colours``).

    ``band`` is shaded (e.g. the "same" range), ``cuts`` are drawn as dashed lines (e.g. the
    bounds an interval must clear to count as a change). Rows without a ratio are dropped.
    """
    df = df[df["ratio"] > 0].reset_index(drop=True)  # NaN compares False: dropped too
    if df.empty:
        return None
    fig = Figure(figsize=(7.5, 1.2 + 0.26 * len(df)))
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
    ax.set_xscale("log")
    low = min(float(np.nanmin(lo)), min(band), min(cuts)) / 1.15
    high = max(float(np.nanmax(hi)), max(band), max(cuts)) * 1.15
    ax.set_xlim(low, high)
    ticks = [t for t in RATIO_TICKS if low <= t <= high]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(y, list(df["label"]), fontsize=7)
    ax.set_ylim(-0.7, len(df) - 0.3)
    ax.set_xlabel(xlabel)
    ax.grid(True, axis="x", which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
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
