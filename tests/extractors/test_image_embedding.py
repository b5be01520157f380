"""image-embedding: the CLIP image tower for items, the text tower for queries, one space."""

from __future__ import annotations

import numpy as np
import pytest

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
