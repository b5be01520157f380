"""The Sink's interface on a real embedded store and over HTTP (the Qdrant stand-in): what the driver,
incremental runs and search use, without touching a Qdrant client."""

from __future__ import annotations

import pytest

from prism_api import ExtractorSpec, QdrantSink
from prism_pipeline import rows as R
from prism_pipeline.extractors import build
from prism_pipeline.sink import Sink, StoreBusyError, StoreMissingError, point_fields
from prism_pipeline.sink.embedded import close_embedded, store_path
from prism_pipeline.sink.server import QdrantWriter

from .stores import DOCS, content_hash, item_rows, outcomes, text_extractor, write_store


@pytest.fixture
def extractors():
    return [text_extractor(), build(ExtractorSpec(name="faces", kind="face-detection"))]


@pytest.fixture
def sink(tmp_path, extractors):
    sink = Sink(QdrantSink(collection="docs", batch_size=2), extractors, tmp_path / "state")
    sink.prepare()
    yield sink
    sink.close()
    close_embedded(tmp_path / "state")


def test_write_upserts_the_points_outcome_rows_carry(sink, extractors):
    rows = item_rows(DOCS) + [R.file_marker("/docs/broken.jpg", R.FAILED, stage="decode", error="bad")]
    outs = outcomes(rows, extractors)
    assert sink.write(outs) == 3  # in batches of sink.batchSize 2; the failed file has no point
    assert sink.count() == 3
    assert sink.write(outs) == 3 and sink.count() == 3  # the same points again: overwritten, not added


def test_meta_records_the_extractors_and_collections_hide_companions(sink):
    meta = sink.meta()
    by_name = {e["name"]: e for e in meta["extractors"]}
    assert by_name["text"]["kind"] == "text-embedding" and by_name["text"]["size"] == 384
    assert by_name["text"]["version"] == text_extractor().version
    assert by_name["faces"]["output"] == "payload"
    assert sink.collections() == ["docs"]


def test_file_records_and_stale_points(sink, extractors):
    sink.write(outcomes(item_rows(DOCS), extractors))
    finished = [(f"/docs/{name}", content_hash(text), 1) for name, text in DOCS.items()]
    sink.record(finished, "key-1")
    found = sink.records(["/docs/bees.txt", "/docs/whales.txt", "/docs/never.txt"])
    assert sorted(found) == ["/docs/bees.txt", "/docs/whales.txt"]
    assert found["/docs/bees.txt"] == {"uri": "/docs/bees.txt", "content_hash": content_hash(DOCS["bees.txt"]),
                                       "items": 1, "run_key": "key-1"}

    # bees.txt changes: its new point is written beside the old one until the old one is dropped
    changed = "Bumblebees are larger and hairier than honeybees."
    sink.write(outcomes(item_rows({"bees.txt": changed}), extractors))
    assert sink.count() == 4
    sink.delete_stale("/docs/bees.txt", content_hash(changed))
    assert sink.count() == 3
    hits = sink.search("text", [float(x) for x in text_extractor().embed_query("bumblebees")], limit=1)
    assert hits[0].payload["text"] == changed


def test_search_returns_scored_payloads_best_first(sink, extractors):
    sink.write(outcomes(item_rows(DOCS), extractors))
    query = [float(x) for x in text_extractor().embed_query("molten lava")]
    hits = sink.search("text", query, limit=2)
    assert len(hits) == 2 and hits[0].score >= hits[1].score
    assert hits[0].payload["uri"] == "/docs/volcano.md" and hits[0].payload["key"] == "/docs/volcano.md#chunk=0"


def test_a_read_handle_creates_no_store_and_releases_the_lock(tmp_path):
    from prism_pipeline.sink.edge_store import EdgeStore

    with pytest.raises(StoreMissingError):
        Sink.open_existing("docs", state_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()

    state = tmp_path / "state"
    write_store(state)
    with Sink.open_existing("docs", state_dir=state) as reader:
        assert reader.count() == 3 and reader.meta() is not None
        with pytest.raises(StoreBusyError):  # the reader holds the store's lock
            EdgeStore(store_path(state))
    other = EdgeStore(store_path(state))  # released: a `prism run` may open it now
    try:
        assert other.count("docs").count == 3
    finally:
        other.close()


def test_no_meta_for_a_collection_prism_did_not_write(tmp_path):
    write_store(tmp_path / "state")
    with Sink.open_existing("elsewhere", state_dir=tmp_path / "state") as reader:
        assert reader.meta() is None
        assert reader.collections() == ["docs"]


def test_a_store_held_by_another_process_is_busy(tmp_path):
    import subprocess
    import sys

    state = tmp_path / "state"
    write_store(state)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom prism_pipeline.sink.embedded import embedded_client\n"
        f"c = embedded_client({str(state)!r})\nprint('open', flush=True)\nsys.stdin.read()\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreBusyError, match="open in another process"):
            Sink.open_existing("docs", state_dir=state)
    finally:
        holder.communicate("", timeout=60)


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_server_mode_through_http(tmp_path, extractors):
    """Server mode: the writer actors' class upserts and marks its rows; the driver's write only counts
    them; records, count, meta and search go over HTTP."""
    from .qdrant_server import QdrantStandIn

    server = QdrantStandIn(fail_upserts=1)
    try:
        spec = QdrantSink(collection="docs", url=server.url, batch_size=2, timeout_seconds=10)
        with Sink(spec, extractors, tmp_path / "state") as sink:
            sink.prepare()
            writer = QdrantWriter(url=server.url, collection="docs", timeout_s=10, **point_fields(extractors))
            outs = R.from_batch(writer(R.to_batch(item_rows(DOCS))))  # retried past one 503
            assert sink.write(outs) == 3 and sink.count() == 3 == server.local.count("docs").count
            sink.record([("/docs/bees.txt", content_hash(DOCS["bees.txt"]), 1)], "key-1")
            assert list(sink.records(["/docs/bees.txt", "/docs/whales.txt"])) == ["/docs/bees.txt"]
            assert sink.meta()["extractors"][0]["name"] == "text"
            assert sink.collections() == ["docs"]
            query = [float(x) for x in text_extractor().embed_query("nectar and honey")]
            assert sink.search("text", query, limit=1)[0].payload["uri"] == "/docs/bees.txt"
        assert not (tmp_path / "state").exists()  # nothing embedded in server mode
    finally:
        server.close()
