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
