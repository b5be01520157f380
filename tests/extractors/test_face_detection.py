"""face-detection on scikit-image's sample photos: libfacedetection's CNN (yuface, the default) and
OpenCV's Haar cascade (options.backend: haar)."""

from __future__ import annotations

import numpy as np
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


def collage() -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """Two astronauts side by side on white, the second shrunk to 1/4 (a face of about 20x25 px),
    and where their faces are."""
    from PIL import Image

    canvas = np.full((512, 1024, 3), 255, np.uint8)
    canvas[:, :512] = data.astronaut()
    canvas[200:328, 700:828] = np.asarray(Image.fromarray(data.astronaut()).resize((128, 128), Image.BOX))
    x, y, w, h = ASTRONAUT_FACE
    return canvas, [ASTRONAUT_FACE, (700 + x / 4, 200 + y / 4, w / 4, h / 4)]


def check_landmarks(payload) -> None:
    assert len(payload["landmarks"]) == payload["count"]
    for (x, y, w, h), points in zip(payload["boxes"], payload["landmarks"], strict=True):
        assert len(points) == 5
        for px, py in points:
            assert x <= px <= x + w and y <= py <= y + h, (payload, points)
        (rx, ry), (lx, ly), (nx, ny), (mrx, mry), (mlx, mly) = points
        assert rx < nx < lx and max(ry, ly) < ny < min(mry, mly)  # eyes above the nose above the mouth


@pytest.mark.slow
def test_yunet_finds_the_astronaut_and_no_face_in_coffee_or_on_the_cat():
    ex = FaceDetection(spec("face-detection"))
    assert ex.backend == "yunet" and ex.version.startswith("yuface==")
    ex.setup()
    astronaut, coffee, cat = ex([image_item("astronaut", data.astronaut()), image_item("coffee", data.coffee()),
                                 image_item("cat", data.chelsea())])
    assert astronaut["count"] == 1, astronaut
    assert overlap(astronaut["boxes"][0], ASTRONAUT_FACE) > 0.7, astronaut
    assert 0.5 <= astronaut["scores"][0] <= 1.0
    check_landmarks(astronaut)
    for nothing in (coffee, cat):
        assert nothing == {"count": 0, "boxes": [], "scores": [], "landmarks": []}


@pytest.mark.slow
def test_yunet_finds_a_small_face_beside_a_large_one_best_first():
    ex = FaceDetection(spec("face-detection"))
    ex.setup()
    image, faces = collage()
    [payload] = ex([image_item("collage", image)])
    assert payload["count"] == 2, payload
    assert payload["scores"] == sorted(payload["scores"], reverse=True)
    assert sorted(overlap(box, face) > 0.6 for box in payload["boxes"] for face in faces).count(True) == 2, payload
    check_landmarks(payload)


@pytest.mark.slow
def test_yunet_boxes_are_in_pixels_of_the_given_image_when_it_is_shrunk_for_detection():
    from PIL import Image

    image, faces = collage()
    large = np.asarray(Image.fromarray(image).resize((2048, 1024), Image.BILINEAR))  # detected at 960x480
    ex = FaceDetection(spec("face-detection", options={"maxSide": 960, "threshold": 0.6}))
    ex.setup()
    [payload] = ex([image_item("large", large)])
    assert payload["count"] == 2, payload
    doubled = [tuple(2 * v for v in face) for face in faces]
    assert sorted(overlap(box, face) > 0.6 for box in payload["boxes"] for face in doubled).count(True) == 2, payload
    assert all(x + w <= 2048 and y + h <= 1024 for x, y, w, h in payload["boxes"])
    check_landmarks(payload)


def test_haar_finds_the_astronauts_face_and_none_in_the_coffee():
    ex = FaceDetection(spec("face-detection", options={"backend": "haar"}))
    assert ex.version.startswith("opencv-haar/haarcascade_frontalface_default.xml@")
    ex.setup()
    astronaut, coffee = ex([image_item("astronaut", data.astronaut()), image_item("coffee", data.coffee())])
    assert astronaut["count"] == 1, astronaut
    assert overlap(astronaut["boxes"][0], ASTRONAUT_FACE) > 0.7, astronaut
    assert astronaut["scores"][0] > 0
    assert coffee == {"count": 0, "boxes": [], "scores": []}


def test_a_haar_option_without_a_backend_keeps_an_older_spec_on_haar():
    assert FaceDetection(spec("face-detection", options={"minNeighbors": 3})).backend == "haar"
    assert FaceDetection(spec("face-detection", options={"threshold": 0.7})).backend == "yunet"


@pytest.mark.parametrize(("fields", "message"), [
    ({"options": {"backend": "mtcnn"}}, "options.backend must be one of yunet, haar"),
    ({"options": {"threshold": 1.5}}, r"options.threshold must be in \[0, 1\]"),
    ({"options": {"maxSide": 32}}, "options.maxSide must be >= 64"),
    ({"options": {"backend": "yunet", "scaleFactor": 1.2}}, "options.scaleFactor applies to options.backend haar"),
    ({"options": {"backend": "haar", "threshold": 0.3}}, "options.threshold applies to options.backend yunet"),
    ({"options": {"scaleFactor": 0.9}}, "scaleFactor must be > 1"),
    ({"model": "file:///x"}, "remove model"),
])
def test_bad_options(fields, message):
    with pytest.raises(ValueError, match=message):
        FaceDetection(spec("face-detection", **fields))
