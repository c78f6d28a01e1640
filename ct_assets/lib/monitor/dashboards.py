"""Segment dashboards: performance and drift over time, as pictures a person reads at a glance."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ct_assets.lib.model.report_plots import png_bytes

if TYPE_CHECKING:
    import pandas as pd


def segment_auc_over_time(live: pd.DataFrame) -> bytes:
    """One line per segment value (and the overall AUC), partition on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.5))
    for segment, rows in live.sort_values("partition").groupby("segment"):
        style = {"linewidth": 3, "color": "black"} if segment == "overall" else {"linewidth": 1, "alpha": 0.8}
        axis.plot(rows["partition"], rows["auc"], label=segment, **style)
    axis.set(title="Live AUC per segment", ylabel="AUC")
    axis.tick_params(axis="x", rotation=45)
    axis.legend(fontsize=7, ncol=2, loc="lower left")
    return png_bytes(figure)


def drift_heatmap(columns: pd.DataFrame) -> bytes:
    """Hellinger distance over threshold per feature and partition (above 1 means drifted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratio = columns.assign(ratio=columns["hellinger"] / columns["threshold"].clip(lower=1e-6))
    grid = ratio.pivot_table(index="column", columns="partition", values="ratio")
    figure, axis = plt.subplots(figsize=(10, 0.3 * len(grid) + 1.5))
    image = axis.imshow(grid.to_numpy(), aspect="auto", cmap="RdYlGn_r", vmin=0, vmax=2)
    axis.set_yticks(range(len(grid)), grid.index, fontsize=7)
    step = max(1, len(grid.columns) // 12)
    axis.set_xticks(range(0, len(grid.columns), step), grid.columns[::step], rotation=45, fontsize=7)
    axis.set_title("Drift per feature: distance / calibrated threshold (red > 1 = drifted)")
    figure.colorbar(image, ax=axis)
    return png_bytes(figure)
