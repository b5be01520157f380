"""SearchFilter -> Qdrant filter (prism_pipeline.serve.filters) on the embedded store and, over HTTP,
the Qdrant stand-in (tests/pipeline/qdrant_server.py, qdrant-client's engine behind REST): exact uri
prefixes (also cut inside a word, where a word-token MatchText fails), modality by item or file,
time ranges, pages; and the page-by-page prefix test used when a server refuses MatchPrefix."""

from __future__ import annotations

from functools import lru_cache

import pytest
from qdrant_client import models as qm

from prism_api import QdrantSink
from prism_api.search_service import SearchFilter
from prism_pipeline import rows as R
from prism_pipeline.serve import filters
from prism_pipeline.serve.ingress import IngressConfig, open_sink
from prism_pipeline.sink import Sink
from prism_pipeline.sink.embedded import close_embedded
from tests.pipeline.stores import content_hash, outcomes, text_extractor

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")

# (uri, item position, file modality, item modality, text, extra position fields)
ITEMS = [
    ("/lib/docs/bees.txt", "chunk=0", "document", "text", "Honeybees make honey from nectar.", {"chunk": 0}),
    ("/lib/docsets/volcano.pdf", "page=1&chunk=0", "document", "text", "A volcano erupts lava and ash.",
     {"page": 1, "chunk": 0}),
    ("/lib/docsets/volcano.pdf", "page=2&chunk=0", "document", "text", "Pompeii was buried by Vesuvius.",
     {"page": 2, "chunk": 0}),
    ("/lib/Docs/whales.txt", "chunk=0", "document", "text", "Whales swim in the deep ocean.", {"chunk": 0}),
    ("/lib/talks/bees talk.mp4", "t=0.000-5.000", "video", "audio", "Bees dance to show where flowers are.",
     {"timestamp": 0.0, "t_end": 5.0}),
    ("/lib/talks/bees talk.mp4", "t=5.000-10.000", "video", "audio", "The queen bee lays the eggs.",
     {"timestamp": 5.0, "t_end": 10.0}),
    ("/lib/talks/bees talk.mp4", "frame=240", "video", "image", "tags: bee, flower", {"timestamp": 10.0, "frame": 240}),
    ("/lib/photos/hive.jpg", "-", "image", "image", "tags: honeycomb", {}),
]


def _rows(ex) -> list[dict]:
    vectors = ex([{"text": t, "modality": "text"} for *_, t, _ in ITEMS])
    rows = []
    for (uri, position, file_modality, modality, text, extra), vector in zip(ITEMS, vectors, strict=True):
        key = uri if position == "-" else f"{uri}#{position}"
        rows.append({"uri": uri, "key": key, "status": R.ITEM, "content_hash": content_hash(uri),
                     "file_modality": file_modality, "modality": modality, "text": text, **extra,
                     "outputs": {"text": vector}, "errors": [], "file_items": 1, "bytes_read": 1, "decoded": True})
    return rows


@pytest.fixture(scope="module", params=["embedded", "server"])
def sink(request, tmp_path_factory):
    """ITEMS in the embedded store, or (over HTTP) in the Qdrant stand-in, read through the handle
    the ingress opens (serve.ingress.open_sink)."""
    ex = text_extractor()
    if request.param == "embedded":
        state = tmp_path_factory.mktemp("filters") / "state"
        writer = Sink(QdrantSink(collection="lib"), [ex], state)
        writer.prepare()
        assert writer.write(outcomes(_rows(ex), [ex])) == len(ITEMS)
        writer.close()
        close_embedded(state)
        reader = open_sink(IngressConfig("lib", None, str(state), 10.0, []))
        yield reader
        reader.close()
        return
    from prism_pipeline.sink import point_fields
    from prism_pipeline.sink.server import QdrantWriter
    from tests.pipeline.qdrant_server import QdrantStandIn

    server = QdrantStandIn()
    try:
        with Sink(QdrantSink(collection="lib", url=server.url), [ex]) as writer:
            writer.prepare()
        QdrantWriter(url=server.url, collection="lib", timeout_s=10, **point_fields([ex]))(R.to_batch(_rows(ex)))
        reader = open_sink(IngressConfig("lib", server.url, None, 10.0, []))
        yield reader
        reader.close()
    finally:
        server.close()


@lru_cache(maxsize=16)
def _query(text: str = "bees and honey") -> list[float]:
    return [float(x) for x in text_extractor().embed_query(text)]


def _keys(found) -> set[str]:
    return {f.payload["key"] for f in found}


def _search(sink, limit: int = 20, query: str = "bees and honey", **where) -> set[str]:
    return _keys(filters.search(sink, "text", _query(query), limit, SearchFilter.model_validate(where)))


@pytest.mark.parametrize(("prefix", "expected"), [
    ("/lib/docs/", {"/lib/docs/bees.txt#chunk=0"}),
    ("/lib/doc", {"/lib/docs/bees.txt#chunk=0", "/lib/docsets/volcano.pdf#page=1&chunk=0",
                  "/lib/docsets/volcano.pdf#page=2&chunk=0"}),                 # cut inside a word
    ("/lib/D", {"/lib/Docs/whales.txt#chunk=0"}),                              # case-sensitive
    ("/lib/talks/bees t", {"/lib/talks/bees talk.mp4#t=0.000-5.000", "/lib/talks/bees talk.mp4#t=5.000-10.000",
                           "/lib/talks/bees talk.mp4#frame=240"}),             # a space in the name
    ("/lib/docs/bees.txt", {"/lib/docs/bees.txt#chunk=0"}),                    # a whole uri
    ("docs", set()),                                                           # inside, not a prefix
    ("/lib/photos/hive.jpg/", set()),
])
def test_a_uri_prefix_is_exact(sink, prefix, expected):
    assert _search(sink, uriPrefix=prefix) == expected


def test_matchtext_is_not_a_prefix_test(sink):
    """Why filters use MatchPrefix: MatchText wants whole words, so a prefix cut in a word misses."""
    where = qm.Filter(must=[qm.FieldCondition(key="uri", match=qm.MatchText(text="/lib/doc"))])
    assert sink.search("text", _query(), 20, where=where) == []


def test_the_page_by_page_prefix_test_agrees(sink):
    for prefix in ("/lib/docs/", "/lib/doc", "/lib/D", "/lib/talks/bees t", "docs", "/"):
        where = SearchFilter(uri_prefix=prefix)
        for limit in (1, 2, 20):
            fast = filters.search(sink, "text", _query(), limit, where)
            paged = filters._prefix_by_pages(sink, "text", _query(), limit, where)
            assert [f.payload["key"] for f in paged] == [f.payload["key"] for f in fast], (prefix, limit)


@pytest.mark.parametrize(("modality", "expected"), [
    (["text"], {"/lib/docs/bees.txt#chunk=0", "/lib/docsets/volcano.pdf#page=1&chunk=0",
                "/lib/docsets/volcano.pdf#page=2&chunk=0", "/lib/Docs/whales.txt#chunk=0"}),
    (["image"], {"/lib/talks/bees talk.mp4#frame=240", "/lib/photos/hive.jpg"}),       # frames and photos
    (["video"], {"/lib/talks/bees talk.mp4#t=0.000-5.000", "/lib/talks/bees talk.mp4#t=5.000-10.000",
                 "/lib/talks/bees talk.mp4#frame=240"}),                               # every item of a video
    (["audio", "document"], {"/lib/talks/bees talk.mp4#t=0.000-5.000", "/lib/talks/bees talk.mp4#t=5.000-10.000",
                             "/lib/docs/bees.txt#chunk=0", "/lib/docsets/volcano.pdf#page=1&chunk=0",
                             "/lib/docsets/volcano.pdf#page=2&chunk=0", "/lib/Docs/whales.txt#chunk=0"}),
])
def test_modality(sink, modality, expected):
    assert _search(sink, modality=modality) == expected


def test_time_range_and_page(sink):
    assert _search(sink, timeRange={"gte": 5}) == {"/lib/talks/bees talk.mp4#t=5.000-10.000",
                                                   "/lib/talks/bees talk.mp4#frame=240"}
    assert _search(sink, timeRange={"lte": 5}) == {"/lib/talks/bees talk.mp4#t=0.000-5.000",
                                                   "/lib/talks/bees talk.mp4#t=5.000-10.000"}
    assert _search(sink, timeRange={"gte": 1, "lte": 9}) == {"/lib/talks/bees talk.mp4#t=5.000-10.000"}
    assert _search(sink, page=2) == {"/lib/docsets/volcano.pdf#page=2&chunk=0"}
    assert _search(sink, page=2, modality=["video"]) == set()
    assert _search(sink, modality=["video", "image"], timeRange={"gte": 6}, uriPrefix="/lib/talks/") == {
        "/lib/talks/bees talk.mp4#frame=240"}


def test_no_filter_is_none_and_order_is_by_score(sink):
    assert filters.to_qdrant(None) is None and filters.to_qdrant(SearchFilter()) is None
    found = filters.search(sink, "text", _query("the queen lays eggs"), 3, None)
    assert found[0].payload["key"] == "/lib/talks/bees talk.mp4#t=5.000-10.000"
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)


class OldServer(Sink):
    """A read handle answering MatchPrefix as a Qdrant server older than the condition does: 400."""

    def search(self, vector_name, query_vector, limit, where=None, offset=0):
        from httpx import Headers
        from qdrant_client.http.exceptions import UnexpectedResponse

        conditions = (where.must or []) if where is not None else []
        if any(isinstance(getattr(c, "match", None), qm.MatchPrefix) for c in conditions):
            refused = UnexpectedResponse(400, "Bad Request", b'{"status":{"error":"unknown variant `prefix`"}}',
                                         Headers())
            return self._call(lambda: (_ for _ in ()).throw(refused), "searching")
        return super().search(vector_name, query_vector, limit, where=where, offset=offset)


def test_an_old_server_refusing_matchprefix_gets_the_same_hits(sink):
    if sink._server:
        pytest.skip("the embedded store plays the old server")
    old = OldServer.open_existing("lib", state_dir=sink._state_dir)
    old._release_store = False  # the same process-wide store as `sink`: the fixture releases it
    for prefix in ("/lib/doc", "/lib/talks/bees t", "nothing"):
        got = _keys(filters.search(old, "text", _query(), 20, SearchFilter(uri_prefix=prefix)))
        assert got == {k for k in _keys(old.search("text", _query(), 20)) if k.startswith(prefix)}, prefix
