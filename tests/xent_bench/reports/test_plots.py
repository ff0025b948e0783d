"""Plots: the axis a reader gets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from xent_bench.reports import plots, run_report


def test_memory_with_zeros_gets_a_symlog_axis_down_to_the_smallest_value(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or path)
    df = pd.DataFrame({"series": ["torch/native"] * 3, "dtype": "float32", "pass": "forward",
                       "form": "sparse", "c": [10, 1000, 32000], "peak_MiB": [0.0, 0.004, 30.0]})
    plots.lines_by_classes(df, y="peak_MiB", ylabel="MiB", path=tmp_path / "m.png", title="t")
    (ax,) = saved[0].axes
    assert ax.get_yscale() == "symlog"
    assert ax.yaxis.get_transform().linthresh == 0.001  # the decade of 0.004 MiB
    labels = [ax.yaxis.get_major_formatter()(v, 0) for v in (0.0, 0.001, 10.0)]
    assert labels == ["0", "0.001", "10"]


def test_a_huge_finite_error_is_not_painted_as_inf(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or path)
    values = pd.DataFrame([[1.0, 8.4e6, float("inf"), float("nan")]], index=["impl"],
                          columns=["a", "b", "c", "d"])
    labels = values.map(str)
    plots.heatmap(values, labels, path=tmp_path / "h.png", title="t", colorbar="eps",
                  cmap="RdYlGn_r", vmin=0.1, vmax=1e4, log=True)
    image = saved[0].axes[0].images[0]
    shown = image.get_array()
    assert shown[0, 1] == 1e4  # clipped to the top of the scale: the map's last colour
    assert shown[0, 2] > 1e4  # infinite: the "over" colour
    assert shown.mask[0, 3]  # NaN: missing
    cmap, norm = image.get_cmap(), image.norm
    assert cmap(norm(shown[0, 1])) != cmap(norm(shown[0, 2]))


def test_a_trend_with_an_outlier_gets_a_log_axis(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or path)
    runs = ["A", "B", "C"]

    def axis(values):
        df = pd.DataFrame({"series": "torch/native/sparse", "run": runs, "median_ms": values})
        plots.trend(df, runs=runs, panels=[("median_ms", "ms")], path=tmp_path / "t.png",
                    title="t")
        return saved[-1].axes[0]

    assert axis([1.0, 1.1, 50.0]).get_yscale() == "log"
    steady = axis([1.0, 1.1, 1.2])
    assert steady.get_yscale() == "linear" and steady.get_ylim()[0] == 0


# --------------------------------------------------------------------------------------------
# Time against C: each framework's fastest, with the IQR as a band


def _cells(rows: list[tuple]) -> pd.DataFrame:
    """Timing cells from (impl, n, c, dtype, pass, median_ms, state, contended) tuples."""
    out = []
    for impl, n, c, dtype, pass_, ms, state, contended in rows:
        out.append({"impl": impl, "framework": impl.split("/")[0], "n": n, "c": c,
                    "dtype": dtype, "pass": pass_, "status": "ok", "state": state,
                    "contended": float(contended), "median_s": ms / 1e3,
                    "q1_s": 0.9 * ms / 1e3, "q3_s": 1.2 * ms / 1e3, "pct_of_limit": 50.0,
                    "peak_extra_bytes": 0.0, "expected_failure": "/naive/" in impl})
    return pd.DataFrame(out)


def test_fastest_per_framework_keeps_the_fastest_clean_agreeing_cell():
    cells = _cells([
        ("torch/native/sparse", 64, 10, "float32", "forward", 2.0, "pass", 0),
        ("torch/compiled/sparse", 64, 10, "float32", "forward", 1.0, "pass", 0),
        ("torch/chunked/sparse", 64, 10, "float32", "forward", 0.5, "FAIL", 0),  # wrong output
        ("torch/manual/onehot", 64, 10, "float32", "forward", 0.4, "pass", 1),  # contended
        ("jax/optax/sparse", 64, 10, "float32", "forward", 3.0, "as-native", 0),
        ("jax/naive/sparse", 64, 10, "float32", "forward", 4.0, "pass", 0),
        ("jax/naive/sparse", 64, 10, "bfloat16", "forward", 4.0, "pass", 0),  # meant to fail
        ("jax/optax/sparse", 64, 10, "bfloat16", "forward", 5.0, "pass", 0),
        ("jax/optax/sparse", 16, 1000, "float32", "forward", 9.0, "pass", 0),
    ])
    cells.loc[len(cells)] = dict(cells.iloc[0]) | {"impl": "torch/triton/sparse",
                                                   "status": "error", "median_s": float("nan")}
    best = run_report.fastest_per_framework(cells)
    got = [(r["impl"], r["c"], r["dtype"]) for r in best.to_dict("records")]
    assert got == [("torch/compiled/sparse", 10, "float32"), ("jax/optax/sparse", 10, "float32"),
                   ("jax/optax/sparse", 10, "bfloat16"), ("jax/optax/sparse", 1000, "float32")]
    # The "which to use" table follows the same rule.
    first = run_report.choice_rows(cells)[0]
    assert first["use"] == "torch/compiled/sparse"
    assert first["fastest of each other framework"] == "jax/optax/sparse 3.00 ms"


def _points(rows: list[tuple]) -> pd.DataFrame:
    """Points of the time plot from (impl, n, c, dtype, pass, median_ms) tuples."""
    df = pd.DataFrame(rows, columns=["impl", "n", "c", "dtype", "pass", "median_ms"])
    return df.assign(framework=df["impl"].str.split("/").str[0], q1_ms=0.8 * df["median_ms"],
                     q3_ms=1.5 * df["median_ms"])


def _capture(monkeypatch) -> list[Figure]:
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig) or path)
    return saved


def test_time_plot_draws_each_framework_with_its_iqr_band_on_log_axes(tmp_path, monkeypatch):
    saved = _capture(monkeypatch)
    df = _points([("torch/compiled/sparse", 4096, 10, "float32", "forward", 0.1),
                  ("torch/native/sparse", 1024, 1000, "float32", "forward", 0.5),
                  ("torch/native/sparse", 256, 32000, "float32", "forward", 5.0),
                  ("jax/optax/sparse", 4096, 10, "float32", "forward", 0.2),
                  ("jax/optax/sparse", 1024, 1000, "float32", "forward", 0.4),
                  ("jax/optax/sparse", 256, 32000, "float32", "forward_backward", 9.0)])
    plots.time_against_classes(df, path=tmp_path / "t.png", title="t")
    fig = saved[0]
    assert len(fig.axes) == 2  # a panel per pass (one dtype)
    forward, backward = fig.axes
    assert forward.get_xscale() == forward.get_yscale() == "log"
    # One band per framework of two points or more, from q1 to q3.
    bands = forward.collections
    assert len(bands) == 2
    for band, fw in zip(bands, ("torch", "jax")):
        ys = set(np.round(band.get_paths()[0].vertices[:, 1], 9))
        line = df[(df["framework"] == fw) & (df["pass"] == "forward")]
        assert ys <= set(np.round(pd.concat([line["q1_ms"], line["q3_ms"]]), 9))
        assert min(ys) == pytest.approx(line["q1_ms"].min())
        assert max(ys) == pytest.approx(line["q3_ms"].max())
    # A lone point gets its interval as a bar.
    (bar,) = backward.collections
    assert bar.get_segments()[0][:, 1].tolist() == pytest.approx([7.2, 13.5])
    # The ticks (on the bottom row) name N with C; the legend names each implementation once.
    assert [t.get_text() for t in backward.get_xticklabels()] == [
        "10\n(N=4096)", "1000\n(N=1024)", "32000\n(N=256)"]
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "torch/compiled/sparse", "torch/native/sparse", "jax/optax/sparse",
        "band: q1 to q3 (IQR)"]
    # Markers tell torch's two implementations apart.
    torch_markers = {ln.get_marker() for ln in forward.lines
                     if ln.get_linestyle() == "None" and ln.get_color() == plots._framework_colour(
                         "torch")}
    assert len(torch_markers) == 2


def test_time_plot_gives_each_n_its_own_row_when_a_c_has_several(tmp_path, monkeypatch):
    saved = _capture(monkeypatch)
    df = _points([("torch/native/sparse", 64, 1000, "float32", "forward", 0.5),
                  ("torch/native/sparse", 256, 1000, "float32", "forward", 2.0),
                  ("torch/native/sparse", 256, 32000, "float32", "forward", 9.0)])
    plots.time_against_classes(df, path=tmp_path / "t.png", title="t")
    titles = [ax.get_title() for ax in saved[0].axes]
    assert titles == ["forward, float32, N=64", "forward, float32, N=256"]
    assert [t.get_text() for t in saved[0].axes[-1].get_xticklabels()] == ["1000", "32000"]


def test_gbps_plot_has_a_column_per_framework_and_a_line_per_variant_and_form(tmp_path,
                                                                              monkeypatch):
    saved = _capture(monkeypatch)
    rows = []
    for impl in ("torch/native/sparse", "torch/native/onehot", "torch/compiled/sparse",
                 "jax/optax/sparse"):
        fw, variant, form = impl.split("/")
        for n, c, gbps in ((4096, 10, 1.0), (1024, 1000, 5.0), (256, 32000, 4.0)):
            for dtype in ("float32", "bfloat16"):
                rows.append({"framework": fw, "variant": variant, "form": form, "n": n, "c": c,
                             "dtype": dtype, "pass": "forward", "GBps": gbps})
    plots.lines_by_framework(pd.DataFrame(rows), y="GBps", ylabel="GB/s", path=tmp_path / "g.png",
                             title="t")
    axes = saved[0].axes
    assert [ax.get_title() for ax in axes] == [
        "torch: forward, float32", "jax: forward, float32", "torch: forward, bfloat16",
        "jax: forward, bfloat16"]
    assert [len(ax.lines) for ax in axes] == [3, 1, 3, 1]  # a line per variant and form
    assert all(len(ln.get_xdata()) == 3 for ax in axes for ln in ax.lines)  # across every C
    assert {ln.get_linestyle() for ln in axes[0].lines} == {"-", "--"}
    assert all(ax.get_yscale() == "log" for ax in axes)


# --------------------------------------------------------------------------------------------
# The compare plot: legible ratio labels


def _forest(n: int, spread: float, tmp_path, monkeypatch) -> Figure:
    saved = _capture(monkeypatch)
    rng = np.random.default_rng(0)
    ratio = np.exp(rng.uniform(-np.log(spread), np.log(spread), n))
    impls = ["torch/native/sparse", "tensorflow/chunked-xla/onehot", "jax/optax-eager/sparse"]
    df = pd.DataFrame({"label": [f"{impls[i % 3]} {256 * (i + 1)}x32000 bfloat16 fwd+bwd"
                                 for i in range(n)],
                       "ratio": ratio, "lo": ratio * 0.93, "hi": ratio * 1.08,
                       "verdict": np.where(ratio > 1, "slower", "faster")})
    plots.intervals(df, path=tmp_path / "r.png", title="t", xlabel="ratio", band=(0.9, 1.1),
                    cuts=(0.88, 1.12), colours={"slower": "red", "faster": "blue"})
    FigureCanvasAgg(saved[0])
    saved[0].canvas.draw()
    return saved[0]


def _overlapping(labels) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent()) for t in labels if t.get_text()]
    return [(a, b) for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1:]
            if box.overlaps(other)]


@pytest.mark.parametrize("n, spread", [(12, 60.0), (40, 3.0), (6, 2000.0), (8, 1.1)])
def test_compare_labels_do_not_overlap(n, spread, tmp_path, monkeypatch):
    fig = _forest(n, spread, tmp_path, monkeypatch)
    (ax,) = fig.axes
    xlabels = [t for t in ax.get_xticklabels() if t.get_visible()]
    assert len([t for t in xlabels if t.get_text()]) >= 3
    assert _overlapping(xlabels) == []
    assert _overlapping(ax.get_yticklabels()) == []
    assert "1x" in [t.get_text() for t in xlabels]
    # Cell labels sit left of the axes, whole.
    assert max(t.get_window_extent().x1 for t in ax.get_yticklabels()) <= ax.bbox.x0
    assert min(t.get_window_extent().x0 for t in ax.get_yticklabels()) >= 0


def test_compare_axis_is_log_only_where_ratios_span_more_than_2x(tmp_path, monkeypatch):
    wide = _forest(8, 5.0, tmp_path, monkeypatch).axes[0]
    assert wide.get_xscale() == "log" and wide.get_xlabel() == "ratio, log scale"
    narrow = _forest(8, 1.1, tmp_path, monkeypatch).axes[0]
    assert narrow.get_xscale() == "linear" and narrow.get_xlabel() == "ratio"
    assert all(t.get_text().endswith("x") for t in narrow.get_xticklabels() if t.get_text())


def test_compare_figure_grows_with_its_rows(tmp_path, monkeypatch):
    small = _forest(5, 3.0, tmp_path, monkeypatch).get_figheight()
    large = _forest(50, 3.0, tmp_path, monkeypatch).get_figheight()
    assert large - small == pytest.approx(45 * plots.ROW_HEIGHT_IN)


def test_ratio_ticks_take_the_densest_tier_that_fits():
    assert plots.ratio_ticks(0.4, 2.5, 9.0) == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.2, 1.5, 2]
    assert plots.ratio_ticks(0.4, 2.5, 5.0) == [0.5, 0.7, 1, 1.5, 2]
    assert plots.ratio_ticks(0.01, 100, 8.0) == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10,
                                                 20, 50, 100]
    assert plots.ratio_ticks(0.01, 100, 5.0) == [0.01, 0.1, 1, 10, 100]
    assert plots.ratio_ticks(0.01, 100, 1.5) == [0.01, 1, 100]  # every second decade


def test_a_heatmap_of_one_row_has_room_for_its_labels(tmp_path):
    """One implementation in one case (a small run): the layout fits without a warning (the
    suite turns warnings into errors, and ``xent-bench report`` printed one)."""
    values = pd.DataFrame([[62.0, 26.0]], index=["torch/native/sparse"],
                          columns=["256x1000 float32 fwd", "256x1000 float32 fwd+bwd"])
    path = plots.heatmap(values, values.map(lambda v: f"{v:g}"), path=tmp_path / "one.png",
                         title="% of limit", colorbar="% of limit", vmin=0, vmax=100)
    assert path is not None and path.stat().st_size > 0
