"""The default image back-ends on the committed sample media (examples/media), decoded by the
pipeline's own decoder: libfacedetection faces, open_nsfw brand safety and RapidOCR text agree with
what examples/media/README.md says each file shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from prism_api import Preprocess
from prism_pipeline.extractors.brand_safety import BrandSafety
from prism_pipeline.extractors.face_detection import FaceDetection
from prism_pipeline.extractors.ocr import OCR
from prism_pipeline.preprocess import decode_file

from .conftest import spec
from .test_face_detection import ASTRONAUT_FACE, overlap

pytestmark = pytest.mark.slow

MEDIA = Path(__file__).resolve().parents[2] / "examples" / "media"


@pytest.fixture(scope="module")
def extractors():
    faces, safety, ocr = (FaceDetection(spec("face-detection")), BrandSafety(spec("brand-safety")),
                          OCR(spec("ocr")))
    for ex in (faces, safety, ocr):
        ex.setup()
    return faces, safety, ocr


def answers(extractors, name: str) -> list[tuple[dict, dict, dict]]:
    """(faces, safety, ocr) for every image item of the sample file, in order."""
    path = MEDIA / name
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    items = [item for item in decode_file(str(path), path.read_bytes(), Preprocess()) if item["modality"] == "image"]
    assert items, name
    return list(zip(*(ex(items) for ex in extractors), strict=True))


def assert_safe(safety: dict) -> None:
    assert safety["top"] == "safe" and safety["scores"]["nsfw"] < 0.1, safety


@pytest.mark.parametrize("name", ["photos/astronaut.jpg", "photos/astronaut_rotated_exif.jpg"])
def test_the_astronaut_has_one_face_upright_and_no_text(extractors, name):
    [(faces, safety, ocr)] = answers(extractors, name)
    assert faces["count"] == 1 and overlap(faces["boxes"][0], ASTRONAUT_FACE) > 0.7, faces
    assert_safe(safety)
    assert ocr == {"text": "", "lines": []}


@pytest.mark.parametrize("name", ["photos/coffee.jpg", "photos/chelsea_cat.png"])
def test_coffee_and_the_cat_have_no_face(extractors, name):
    [(faces, safety, _)] = answers(extractors, name)
    assert faces["count"] == 0, faces
    assert_safe(safety)


def test_the_cat_has_no_text(extractors):
    [(_, _, ocr)] = answers(extractors, "photos/chelsea_cat.png")
    assert ocr == {"text": "", "lines": []}


def test_the_shop_sign_is_read(extractors):
    [(faces, safety, ocr)] = answers(extractors, "photos/shop_sign.jpg")
    lines = [line["text"].upper() for line in ocr["lines"]]
    assert "BICYCLE REPAIR" in lines and any(line.startswith("OPEN DAILY") for line in lines), ocr
    assert lines.index("BICYCLE REPAIR") < next(i for i, line in enumerate(lines) if line.startswith("OPEN DAILY"))
    assert faces["count"] == 0
    assert_safe(safety)


def test_the_video_shows_a_face_for_three_seconds_then_coffee(extractors):
    frames = answers(extractors, "video/astronaut_then_coffee.mp4")
    assert len(frames) == 6  # 1 fps over 6 s
    assert [faces["count"] for faces, _, _ in frames] == [1, 1, 1, 0, 0, 0]
    for _, safety, _ in frames:
        assert_safe(safety)
