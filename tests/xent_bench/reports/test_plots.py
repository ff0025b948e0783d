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
