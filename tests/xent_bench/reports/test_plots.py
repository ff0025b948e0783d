"""Plots: the axis a reader gets."""

from __future__ import annotations

import pandas as pd

from xent_bench.reports import plots


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
