"""Issue 15, collections: a job never silently destroys what another job wrote into its collection,
and a run can reconcile a collection with its source (spec.deletedFiles Delete)."""

from __future__ import annotations

import logging

import pytest

from prism_api import ExtractorSpec, QdrantSink
from prism_pipeline.extractors import build
from prism_pipeline.pipeline import JobError, run_job
from prism_pipeline.sink import CollectionError, Sink
from prism_pipeline.sink.embedded import close_embedded, embedded_client

from .conftest import FACES, TEXT, TEXTS, spec_for
from .stores import DOCS, OlderTextEmbedding, text_extractor, write_store


def texts(folder, names=("bees.txt", "space.txt")):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(TEXTS[name])
    return folder


def payloads(state, collection):
    points, _ = embedded_client(state).scroll(collection, limit=1000, with_payload=True, with_vectors=True)
    return points


# -- 1. a job whose extractors differ from the collection's record is refused before any write ------------

@pytest.mark.slow
def test_a_job_with_other_extractors_is_refused_and_writes_nothing(ray_session, tmp_path):
    media, state = texts(tmp_path / "media"), tmp_path / "state"
    first = run_job("text", spec_for(media, "mymedia", [TEXT]), state_dir=state)
    assert first.ok and first.points_in_collection == 2
    before = payloads(state, "mymedia")
    assert all("text" in p.vector for p in before)

    with pytest.raises(JobError) as refused:
        run_job("faces", spec_for(media, "mymedia", [FACES]), state_dir=state)
    message = str(refused.value)
    assert "spec.sink.qdrant.collection: 'mymedia'" in message
    assert "'text'" in message and "not in this job" in message          # removed
    assert "'faces'" in message and "not recorded" in message            # added
    assert "prism collections delete mymedia" in message
    after = payloads(state, "mymedia")
    assert [(p.id, p.payload, p.vector) for p in after] == [(p.id, p.payload, p.vector) for p in before]
    assert Sink(QdrantSink(collection="mymedia"), [], state).meta()["extractors"][0]["name"] == "text"

    # the same job again is still an incremental run
    again = run_job("text", spec_for(media, "mymedia", [TEXT]), state_dir=state)
    assert again.ok and again.tracker.totals.files_skipped == 2 and again.points_in_collection == 2


def test_another_version_of_an_extractor_is_refused_naming_both(tmp_path):
    state = tmp_path / "state"
    write_store(state)
    older = OlderTextEmbedding(ExtractorSpec(name="text", kind="text-embedding"))
    sink = Sink(QdrantSink(collection="docs"), [older], state)
    try:
        with pytest.raises(CollectionError) as refused:
            sink.prepare()
        message = str(refused.value)
        assert f"version {text_extractor().version}" in message and f"version {older.version}" in message
        assert sink.meta()["extractors"][0]["version"] == text_extractor().version  # record untouched
        # the same extractors again fit (and another option value is not another extractor)
        Sink(QdrantSink(collection="docs"), [text_extractor()], state).prepare()
    finally:
        sink.close()
        close_embedded(state)


def test_another_kind_under_the_same_name_is_refused(tmp_path):
    state = tmp_path / "state"
    write_store(state)
    other = build(ExtractorSpec(name="text", kind="face-detection"))
    try:
        with pytest.raises(CollectionError, match=r"extractor 'text'.*text-embedding.*face-detection"):
            Sink(QdrantSink(collection="docs"), [other], state).prepare()
    finally:
        close_embedded(state)


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_a_server_collection_is_checked_the_same_way(tmp_path):
    from .qdrant_server import QdrantStandIn

    server = QdrantStandIn()
    try:
        spec = QdrantSink(collection="docs", url=server.url, timeout_seconds=10)
        text = [text_extractor()]
        with Sink(spec, text, tmp_path) as sink:
            sink.prepare()
        faces = build(ExtractorSpec(name="faces", kind="face-detection"))
        with Sink(spec, [*text, faces], tmp_path) as sink, pytest.raises(CollectionError) as refused:
            sink.prepare()
        assert "'faces'" in str(refused.value) and "Qdrant API" in str(refused.value)
        with Sink(spec, text, tmp_path) as sink:
            sink.prepare()  # the same extractors again
            assert [e["name"] for e in sink.meta()["extractors"]] == ["text"]
    finally:
        server.close()


# -- 2. spec.deletedFiles Delete: files no longer listed lose their points and records ---------------------

@pytest.mark.slow
def test_a_renamed_folder_with_delete_leaves_one_point_per_file(ray_session, tmp_path):
    state = tmp_path / "state"
    media = texts(tmp_path / "media", names=("bees.txt", "space.txt", "ocean.txt"))
    assert run_job("r", spec_for(media, "moved", [TEXT]), state_dir=state).points_in_collection == 3

    moved = media.rename(tmp_path / "renamed")
    kept = run_job("r", spec_for(moved, "moved", [TEXT]), state_dir=state)  # default Keep: doubles
    assert kept.points_in_collection == 6 and kept.files_removed == 0

    (moved / "ocean.txt").unlink()  # and one file deleted
    result = run_job("r", spec_for(moved, "moved", [TEXT], deletedFiles="Delete"), state_dir=state)
    assert result.ok and result.files_removed == 4 and "4 removed" in result.message
    uris = sorted(p.payload["uri"] for p in payloads(state, "moved"))
    assert uris == [str(moved / "bees.txt"), str(moved / "space.txt")]
    sink = Sink(QdrantSink(collection="moved"), [], state)
    assert sorted(sink.recorded_uris()) == uris


def test_an_empty_listing_deletes_nothing(ray_session, tmp_path, caplog):
    state = tmp_path / "state"
    write_store(state, "kept")
    empty = tmp_path / "mount"
    empty.mkdir()
    spec = spec_for(empty, "kept", [TEXT], deletedFiles="Delete")
    with caplog.at_level(logging.WARNING, logger="prism.pipeline"):
        result = run_job("empty", spec, state_dir=state)
    assert result.files_removed == 0 and result.points_in_collection == len(DOCS)
    assert any("listed no files" in r.getMessage() and "deletes nothing" in r.getMessage() for r in caplog.records)


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_delete_missing_on_a_server_deletes_by_uri(tmp_path):
    from .qdrant_server import QdrantStandIn
    from .stores import content_hash, item_rows, outcomes

    server = QdrantStandIn()
    try:
        spec = QdrantSink(collection="docs", url=server.url, timeout_seconds=10)
        with Sink(spec, [text_extractor()], tmp_path) as sink:
            sink.prepare()
            server.local.upsert("docs", points=[o["point"] for o in outcomes(item_rows(DOCS), [text_extractor()])])
            sink.record([(f"/docs/{n}", content_hash(t), 1) for n, t in DOCS.items()], "k")
            assert sink.delete_missing(["/docs/bees.txt"]) == 2
            assert sorted(p.payload["uri"] for p in server.local.scroll("docs", limit=100, with_payload=True)[0]) \
                == ["/docs/bees.txt"]
            assert sink.recorded_uris() == ["/docs/bees.txt"]
            assert sink.delete_missing([]) == 0 and sink.count() == 1
    finally:
        server.close()
