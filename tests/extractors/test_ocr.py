"""ocr: RapidOCR (PP-OCRv6 small, the default) reads a sign pasted on a photo and nothing on the cat;
Tesseract (options.backend: tesseract) reads drawn text; a missing binary or language is a clear error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from prism_pipeline.extractors import ExtractorError, build
from prism_pipeline.extractors.ocr import OCR, reading_order
from prism_pipeline.model_uris import ModelError

from .conftest import image_item, spec

data = pytest.importorskip("skimage.data", reason="scikit-image ships the sample photos")

TESSERACT = {"backend": "tesseract"}
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


def sign_on_coffee() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Two lines of large dark letters on a light panel pasted onto scikit-image's coffee photo, and
    the panel's box (x, y, w, h)."""
    from PIL import Image, ImageDraw, ImageFont

    photo = Image.fromarray(data.coffee())
    font = ImageFont.load_default(size=40)
    panel = Image.new("RGB", (340, 130), (235, 230, 215))
    draw = ImageDraw.Draw(panel)
    draw.text((20, 15), "FRESH COFFEE", fill=(25, 25, 25), font=font)
    draw.text((20, 70), "OPEN DAILY", fill=(25, 25, 25), font=font)
    photo.paste(panel, (230, 240))
    return np.asarray(photo), (230, 240, 340, 130)


@pytest.mark.slow
def test_rapidocr_reads_a_sign_on_a_photo_and_nothing_on_the_cat():
    ex = OCR(spec("ocr"))
    assert ex.backend == "rapidocr"
    ex.setup()
    image, (px, py, pw, ph) = sign_on_coffee()
    sign, cat = image_item("sign.png", image), image_item("cat.png", data.chelsea())
    payload, nothing = ex([sign, cat])
    assert nothing == {"text": "", "lines": []}
    assert "text" not in cat
    words = payload["text"].upper().split()
    assert {"FRESH", "COFFEE", "OPEN", "DAILY"} <= set(words), payload
    # reading order: the top line first
    assert words.index("FRESH") < words.index("COFFEE") < words.index("OPEN") < words.index("DAILY")
    assert payload["text"] == "\n".join(line["text"] for line in payload["lines"])
    for line in payload["lines"]:
        x, y, w, h = line["box"]
        assert 0 <= x and 0 <= y and x + w <= image.shape[1] and y + h <= image.shape[0]
        if line["text"].upper() in ("FRESH COFFEE", "OPEN DAILY"):  # on the panel, not elsewhere
            assert px - 5 <= x and py - 5 <= y and x + w <= px + pw + 5 and y + h <= py + ph + 5, line
        assert 50 <= line["confidence"] <= 100
    # handed on to a later text-embedding stage
    assert sign["text"] == payload["text"]


def test_rapidocr_is_the_default_and_needs_no_model():
    ex = OCR(spec("ocr"))
    assert ex.backend == "rapidocr"
    assert ex.version.startswith("rapidocr==3.") and "/PP-OCRv6-small" in ex.version
    # a Tesseract option without options.backend keeps an older spec on tesseract
    assert OCR(spec("ocr", options={"language": "deu"})).backend == "tesseract"
    assert OCR(spec("ocr", options={"psm": 6})).backend == "tesseract"


def test_reading_order_is_rows_then_left_to_right():
    def line(text, x, y, w=40, h=20):
        return {"text": text, "box": [x, y, w, h], "confidence": 90.0}

    lines = [line("right", 200, 12), line("below", 10, 60), line("left", 10, 10), line("middle", 100, 8)]
    assert [ln["text"] for ln in reading_order(lines)] == ["left", "middle", "right", "below"]


@needs_tesseract
def test_reads_drawn_text_line_by_line():
    ex = OCR(spec("ocr", options=TESSERACT))
    assert ex.version.startswith("tesseract-") and ex.version.endswith("/eng/psm=3")
    ex.setup()
    image = text_image(["PRISM READS FRAMES", "Hello World 2026"])
    blank = np.full((100, 100, 3), 255, np.uint8)
    sign = image_item("sign.png", image)
    payload, empty = ex([sign, image_item("blank.png", blank)])
    assert empty == {"text": "", "lines": []}
    assert sign["text"] == "PRISM READS FRAMES\nHello World 2026"
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
        build(spec("ocr", options=TESSERACT), "spec.extractors[0]")  # on the driver, before any Ray actor
    with pytest.raises(ModelError, match="tesseract binary is not installed"):
        OCR(spec("ocr", options=TESSERACT)).setup()
    build(spec("ocr"), "spec.extractors[0]")  # the default back-end needs no binary


@pytest.mark.parametrize(("fields", "message"), [
    ({"model": "file:///x"}, "not supported yet: remove model"),
    ({"model": "file:///x", "options": TESSERACT}, "tesseract binary; remove model"),
    ({"options": {"backend": "easyocr"}}, "options.backend must be one of rapidocr, tesseract"),
    ({"options": {"backend": "rapidocr", "language": "deu"}}, "options.language applies to options.backend tesseract"),
    ({"options": {"psm": 14}}, "psm must be"),
    ({"options": {"minConfidence": 101}}, "minConfidence must be in 0..100"),
    ({"options": {"timeoutSeconds": 0}}, "timeoutSeconds must be > 0"),
])
def test_bad_options(fields, message):
    with pytest.raises(ValueError, match=message):
        OCR(spec("ocr", **fields))


@pytest.mark.slow
def test_rapidocr_drops_lone_characters_it_reads_into_objects():
    """PP-OCRv6 reads the coffee cup's rim as "8" with high confidence; minChars (default 2) drops it,
    so the cup gets no text to embed. minChars: 1 keeps it."""
    from skimage import data

    default = OCR(spec("ocr"))
    default.setup()
    item = image_item("coffee", data.coffee())
    assert default([item]) == [{"text": "", "lines": []}] and not item.get("text")
    keep = OCR(spec("ocr", options={"minChars": 1}))
    keep.setup()
    assert any(len(line["text"]) == 1 for line in keep([image_item("coffee", data.coffee())])[0]["lines"])
    assert keep.version != default.version


def test_min_chars_is_for_rapidocr():
    with pytest.raises(ValueError, match="options.minChars must be >= 1"):
        OCR(spec("ocr", options={"minChars": 0}))
    with pytest.raises(ValueError, match="options.minChars applies to options.backend rapidocr only"):
        OCR(spec("ocr", options={"backend": "tesseract", "minChars": 3}))
