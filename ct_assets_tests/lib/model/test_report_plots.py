"""Report pictures: real PNGs of the calibration and per-segment AUC, embeddable in Markdown."""

from __future__ import annotations

import base64
import io

from ct_assets.lib.model import report_plots

PNG = b"\x89PNG\r\n\x1a\n"


def _size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return image.size


def test_calibration_png_is_an_image() -> None:
    png = report_plots.calibration_png(
        {"champion": [(0.1, 0.12, 50), (0.5, 0.45, 40)], "candidate": [(0.2, 0.2, 30), (0.7, 0.8, 20)]}
    )
    assert png.startswith(PNG)
    width, height = _size(png)
    assert width > 200 and height > 200


def test_segment_png_grows_with_the_segments_and_accepts_missing_values() -> None:
    few = report_plots.segment_auc_png(["AA", "UA"], {"champion": [0.7, None]})
    many = report_plots.segment_auc_png([f"S{i}" for i in range(30)], {"a": [0.6] * 30, "b": [0.7] * 30})
    assert few.startswith(PNG) and many.startswith(PNG)
    assert _size(many)[0] > _size(few)[0]


def test_markdown_image_embeds_the_bytes() -> None:
    text = report_plots.markdown_image(b"\x89PNG-bytes", "calibration")
    prefix = "![calibration](data:image/png;base64,"
    assert text.startswith(prefix) and text.endswith(")")
    assert base64.b64decode(text[len(prefix) : -1]) == b"\x89PNG-bytes"
