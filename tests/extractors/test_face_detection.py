"""face-detection (OpenCV's shipped Haar cascade) on scikit-image's sample photos."""

from __future__ import annotations

import pytest

from prism_pipeline.extractors.face_detection import FaceDetection

from .conftest import image_item, spec

data = pytest.importorskip("skimage.data", reason="scikit-image ships the sample photos")

# Where Eileen Collins' face is in skimage.data.astronaut() (512x512), checked by eye: x, y, w, h.
ASTRONAUT_FACE = (180, 70, 80, 100)


def overlap(a, b) -> float:
    """Intersection over the smaller box."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / min(a[2] * a[3], b[2] * b[3])


def test_finds_the_astronauts_face_and_none_in_the_coffee():
    ex = FaceDetection(spec("face-detection"))
    ex.setup()
    astronaut, coffee = ex([image_item("astronaut", data.astronaut()), image_item("coffee", data.coffee())])
    assert astronaut["count"] == 1, astronaut
    assert overlap(astronaut["boxes"][0], ASTRONAUT_FACE) > 0.7, astronaut
    assert astronaut["scores"][0] > 0
    assert coffee == {"count": 0, "boxes": [], "scores": []}
