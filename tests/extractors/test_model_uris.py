"""hf:// models come from the local cache in the Hugging Face layout (what `huggingface-cli download
--cache-dir` and the worker image's PRELOAD_MODELS write); the version is repo + commit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prism_pipeline import model_uris as models
from prism_pipeline.extractors.image_embedding import ImageEmbedding

from .conftest import image_item, spec

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, clip_uri) -> Path:
    """A cache holding prism-test/tiny-clip at COMMIT, reachable as main and as revision v1."""
    repo = tmp_path / "cache" / "models--prism-test--tiny-clip"
    shutil.copytree(clip_uri[len("file://"):], repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    for ref in ("main", "v1"):
        (repo / "refs" / ref).write_text(COMMIT)
    monkeypatch.setenv(models.ENV_CACHE, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
@pytest.mark.parametrize("uri", ["hf://prism-test/tiny-clip", "hf://prism-test/tiny-clip@v1"])
def test_hf_model_from_the_cache(hf_cache, uri, images):
    ex = ImageEmbedding(spec("image-embedding", uri))
    assert ex.version == f"hf://prism-test/tiny-clip@{COMMIT}"
    ex.setup()
    [vector] = ex([image_item("i", images[0])])
    assert vector.shape == (16,)


def test_hf_model_missing_from_the_cache(hf_cache):
    ex = ImageEmbedding(spec("image-embedding", "hf://prism-test/other"))
    with pytest.raises(models.ModelError, match="not in the model cache .* does not download models"):
        ex.version  # noqa: B018
