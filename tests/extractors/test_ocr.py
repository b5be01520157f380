"""ocr: Tesseract reads text the test draws; a missing binary or language is a clear error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from prism_pipeline.extractors import ExtractorError, build
from prism_pipeline.extractors.ocr import OCR
from prism_pipeline.model_uris import ModelError

from .conftest import image_item, spec

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="tesseract is not installed (apt-get install -y tesseract-ocr)")


def text_image(lines: list[str]) -> np.ndarray:
    """Black text on white, in Pillow's bundled font (no system fonts needed)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=36)
    image = Image.new("RGB", (640, 70 * len(lines) + 40), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((30, 30 + 70 * n), line, fill="black", font=font)
    return np.asarray(image)


@needs_tesseract
def test_reads_drawn_text_line_by_line():
    ex = OCR(spec("ocr"))
    assert ex.version.startswith("tesseract-") and ex.version.endswith("/eng/psm=3")
    ex.setup()
    image = text_image(["PRISM READS FRAMES", "Hello World 2026"])
    blank = np.full((100, 100, 3), 255, np.uint8)
    payload, empty = ex([image_item("sign.png", image), image_item("blank.png", blank)])
    assert empty == {"text": "", "lines": []}
    assert payload["text"].splitlines() == ["PRISM READS FRAMES", "Hello World 2026"], payload
    first, second = payload["lines"]
    assert first["box"][1] + first["box"][3] <= second["box"][1]  # first line above the second
    for line in payload["lines"]:
        x, y, w, h = line["box"]
        assert 0 <= x and 0 <= y and x + w <= image.shape[1] and y + h <= image.shape[0]
        assert 30 <= line["confidence"] <= 100


@needs_tesseract
def test_missing_language_data_is_a_setup_error():
    ex = OCR(spec("ocr", options={"language": "eng+xyz"}))
    with pytest.raises(ModelError, match="no data for xyz.*tesseract-ocr-xyz"):
        ex.setup()


def test_missing_binary_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ExtractorError, match=r"spec.extractors\[0\]: .*tesseract binary is not installed.*"
                                              "apt-get install -y tesseract-ocr"):
        build(spec("ocr"), "spec.extractors[0]")  # on the driver, before any Ray actor starts
    with pytest.raises(ModelError, match="tesseract binary is not installed"):
        OCR(spec("ocr")).setup()


@pytest.mark.parametrize(("fields", "message"), [
    ({"model": "file:///x"}, "remove model"),
    ({"options": {"psm": 14}}, "psm must be"),
    ({"options": {"minConfidence": 101}}, "minConfidence must be in 0..100"),
    ({"options": {"timeoutSeconds": 0}}, "timeoutSeconds must be > 0"),
])
def test_bad_options(fields, message):
    with pytest.raises(ValueError, match=message):
        OCR(spec("ocr", **fields))
