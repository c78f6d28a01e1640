"""Pictures for the evaluation report: a calibration plot and a per-segment AUC comparison, as PNG."""

from __future__ import annotations

import base64
import io


def png_bytes(figure: object) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(figure)  # type: ignore[arg-type]
    return buffer.getvalue()


def calibration_png(curves: dict[str, list[tuple[float, float, int]]]) -> bytes:
    """Observed rate against mean prediction per bin (a reliability diagram), one line per model;
    a curve named "... before calibration" is drawn dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4))
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect")
    for name, points in curves.items():
        style = "--" if name.endswith("before calibration") else "-"
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", linestyle=style, label=name)
    axis.set(xlabel="mean predicted probability", ylabel="observed rate", title="Reliability (holdout)")
    axis.legend()
    return png_bytes(figure)


def segment_auc_png(segments: list[str], series: dict[str, list[float | None]]) -> bytes:
    """AUC per segment value, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(max(5, 0.45 * len(segments) + 2), 3.5))
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(segments))
    for index, (name, values) in enumerate(series.items()):
        axis.bar(positions + index * width, [v if v is not None else 0 for v in values], width, label=name)
    axis.set_xticks(positions + width * (len(series) - 1) / 2, segments, rotation=60, ha="right", fontsize=8)
    axis.set(ylabel="AUC", title="AUC per segment (holdout)", ylim=(0.4, 1.0))
    axis.legend()
    return png_bytes(figure)


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
