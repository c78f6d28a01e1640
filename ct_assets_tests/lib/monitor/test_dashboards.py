"""Dashboards render real PNG pictures from the live-performance and drift-columns tables."""

from __future__ import annotations

import io

import pandas as pd
from PIL import Image

from ct_assets.lib.monitor.dashboards import drift_heatmap, segment_auc_over_time

PARTITIONS = [f"2013-01-{d:02d}" for d in range(1, 8)]


def _size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(png)).size


def test_segment_auc_over_time_draws_every_segment() -> None:
    live = pd.DataFrame(
        [
            {"partition": p, "segment": s, "auc": 0.6 + 0.01 * i}
            for i, p in enumerate(PARTITIONS)
            for s in ("overall", "origin=EWR", "origin=JFK")
        ]
    )
    width, height = _size(segment_auc_over_time(live))
    assert width > 400 and height > 200


def test_the_drift_heatmap_grows_with_the_features() -> None:
    def columns(features: int) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"partition": p, "column": f"f{j}", "hellinger": 0.01 * (i + j), "threshold": 0.05}
                for i, p in enumerate(PARTITIONS)
                for j in range(features)
            ]
        )

    _, few = _size(drift_heatmap(columns(3)))
    _, many = _size(drift_heatmap(columns(30)))
    assert many > few
