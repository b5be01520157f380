"""Partial results visible in the data: an item an extractor failed on is written with the failed
extractors and their reasons, `prism failed` and a Qdrant filter find it, and the next incremental
run extracts its file again (and only that file), clearing the marking without duplicating points."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from prism_api import ExtractorSpec, QdrantSink
from prism_api import point_payload as PP
from prism_api.point_payload import ExtractorFailure, failed_filter
from prism_cli import cmd_failed
from prism_cli.main import main as prism
from prism_pipeline import incremental
from prism_pipeline import rows as R
from prism_pipeline.failed_items import failed_items
from prism_pipeline.ledger import FileTracker, Written
from prism_pipeline.points import point_id, to_point
from prism_pipeline.search import SearchError
from prism_pipeline.sink import Sink
from prism_pipeline.sink.embedded import close_embedded, embedded_client
from prism_pipeline.sink.file_records import FAILED_STAGE, FINGERPRINT
from prism_pipeline.sources import FileRef

from .conftest import TEXT, spec_for, write_media
from .stores import DOCS, content_hash, item_rows, outcomes, text_extractor

HASH = "ab" * 32
VERSIONS = {"text": "m@1", "digest": "d@1"}


def row(key: str, errors=(), outputs=None) -> dict:
    return {"uri": key.split("#")[0], "key": key, "status": R.ITEM, "content_hash": HASH, "file_items": 1,
            "bytes_read": 0, "decoded": False, "errors": list(errors), "outputs": outputs or {},
            "modality": "text", "file_modality": "document", "text": "t", "chunk": 0}


# -- the payload a point carries --------------------------------------------------------------------------

def test_a_point_names_the_extractors_that_failed_on_its_item_and_why():
    failed = row("/m/a.txt#chunk=0", outputs={"text": np.ones(3, np.float32)},
                 errors=[{"stage": "digest", "error": "/m/a.txt#chunk=0: ValueError: cannot digest poison"}])
    p = to_point(failed, {"text"}, {"digest"}, VERSIONS)
    assert p.vector == {"text": [1.0, 1.0, 1.0]} and "digest" not in p.payload  # written without that output
    assert p.payload[PP.FAILED_EXTRACTORS] == ["digest"]
    assert p.payload[PP.FAILURE_REASONS] == {"digest": "ValueError: cannot digest poison"}  # the key is the point's
    assert "errors" not in p.payload

    complete = to_point(row("/m/b.txt#chunk=0", outputs={"digest": {"chars": 1}}), {"text"}, {"digest"}, VERSIONS)
    assert complete.payload[PP.FAILED_EXTRACTORS] == [] and complete.payload[PP.FAILURE_REASONS] == {}


def test_a_decode_error_riding_on_an_item_is_not_an_extractor_failure():
    broken = row("/m/v.mp4#frame=9", errors=[{"stage": "decode", "error": "/m/v.mp4: stream ends early"}])
    payload = to_point(broken, set(), {"digest"}, VERSIONS).payload
    assert payload[PP.FAILED_EXTRACTORS] == []
    assert payload["errors"] == [{"stage": "decode", "error": "/m/v.mp4: stream ends early"}]


def test_the_run_summary_says_how_to_find_the_partial_items():
    from prism_pipeline.console import summary
    from prism_pipeline.pipeline import JobResult

    t = FileTracker(files_total=1)
    t.observe(row("/a#chunk=0") | {"errors": [{"stage": "digest", "error": "boom"}]})
    result = JobResult(name="j", ok=True, message="done", tracker=t, wall_s=1.0, collection="docs",
                       points_in_collection=1, extractors=["text", "digest"])
    assert ("  1 item written without an extractor's output; list them with `prism failed --collection docs`, "
            "run again to reprocess their files") in summary(result).splitlines()
    clean = FileTracker(files_total=1)
    clean.observe(row("/a#chunk=0"))
    assert "prism failed" not in summary(JobResult(name="j", ok=True, message="done", tracker=clean, wall_s=1.0,
                                                   collection="docs", extractors=["text"]))


# -- incremental runs ---------------------------------------------------------------------------------------

def test_a_record_marked_failed_is_never_skipped_but_still_names_the_stale_points():
    spec = spec_for("/m", "c", [TEXT])
    key = incremental.run_key(spec, [text_extractor()])
    records = {"/m/a.txt": {"uri": "/m/a.txt", "content_hash": "h1", "items": 1, "run_key": key},
               "/m/b.txt": {"uri": "/m/b.txt", "content_hash": "h2", "items": 1, "run_key": key,
                            FAILED_STAGE: "digest"}}
    plan = incremental.plan(spec, [text_extractor()])
    a = plan.decide(FileRef("/m/a.txt", 1, "1:5"), records["/m/a.txt"])
    assert not a.unchanged and a.prev_hash == "h1", "no fingerprint recorded: its read task checks the hash"
    assert plan.decide(FileRef("/m/a.txt", 1, "1:5"), records["/m/a.txt"] | {FINGERPRINT: "1:5"}).unchanged
    assert not plan.decide(FileRef("/m/a.txt", 1, "1:6"), records["/m/a.txt"] | {FINGERPRINT: "1:5"}).unchanged
    b = plan.decide(FileRef("/m/b.txt", 1, "1:5"), records["/m/b.txt"] | {FINGERPRINT: "1:5"})
    assert not b.unchanged and b.prev_hash == "", "a failed record is never skipped on"
    assert b.pending.recorded_hash == "h2", "its recorded hash names the points a content change makes stale"


def test_a_file_whose_items_all_came_through_is_written_even_when_an_extractor_failed():
    t = FileTracker(files_total=2)
    assert t.observe(row("/a#chunk=0") | {"file_items": 2, "errors": [{"stage": "digest", "error": "boom"}]}) is None
    assert t.observe(row("/a#chunk=1") | {"file_items": 2}) == Written("/a", HASH, 2, failed_stage="digest")
    assert t.observe(row("/b#chunk=0")) == Written("/b", HASH, 1)
    assert [(f.uri, f.stage) for f in t.failures] == [("/a", "digest")]  # still in the failure ledger
    assert (t.totals.files_failed, t.totals.files_done, t.totals.items_failed) == (1, 1, {"digest": 1})


# -- the sink and `prism failed` on real stores, without Ray ---------------------------------------------

def poisoned_rows(poisoned: tuple[str, ...] = ("bees.txt",)) -> list[dict]:
    """The DOCS items as the text stage hands them on, with a payload extractor `digest` that
    failed on the `poisoned` documents and produced {"chars": n} for the others."""
    rows = item_rows(DOCS)
    for r in rows:
        if r["uri"].rsplit("/", 1)[-1] in poisoned:
            r["errors"].append({"stage": "digest", "error": f"{r['key']}: ValueError: cannot digest poison"})
        else:
            r["outputs"]["digest"] = {"chars": len(r["text"])}
    return rows


def digest() -> ExtractorSpec:
    return ExtractorSpec(name="digest", kind="python: tests.pipeline.plugins:Poisoned")


@pytest.fixture
def state(tmp_path):
    """An embedded store whose `docs` collection holds DOCS, bees.txt without its digest."""
    from prism_pipeline.extractors import build

    extractors = [text_extractor(), build(digest())]
    with Sink(QdrantSink(collection="docs", batch_size=2), extractors, tmp_path / "state") as sink:
        sink.prepare()
        sink.write(outcomes(poisoned_rows(), extractors))
    close_embedded(tmp_path / "state")
    return tmp_path / "state"


def test_failed_items_finds_the_item_by_any_extractor_and_by_name(state):
    found = failed_items("docs", state_dir=state)
    assert found.total == 1
    assert found.items[0].uri == "/docs/bees.txt" and found.items[0].item == "chunk=0"
    assert found.items[0].failures == (ExtractorFailure("digest", "ValueError: cannot digest poison"),)
    assert failed_items("docs", extractor="digest", state_dir=state).total == 1
    assert failed_items("docs", extractor="text", state_dir=state).items == []
    with pytest.raises(SearchError, match=r"^--extractor 'ocr': collection 'docs' has extractors text, digest$"):
        failed_items("docs", extractor="ocr", state_dir=state)
    with pytest.raises(SearchError, match=r"^no Prism collection 'nope' \(collections here: docs\)$"):
        failed_items("nope", state_dir=state)


def test_the_raw_qdrant_filters_find_partial_and_complete_points(state):
    from qdrant_client import models as qm

    client = embedded_client(state)
    try:
        partial, _ = client.scroll("docs", scroll_filter=qm.Filter.model_validate(failed_filter()), with_payload=True)
        complete = client.count("docs", count_filter=qm.Filter(must=[
            qm.IsEmptyCondition(is_empty=qm.PayloadField(key=PP.FAILED_EXTRACTORS))]), exact=True).count
        by_name = client.count("docs", count_filter=qm.Filter.model_validate(failed_filter("digest")), exact=True)
    finally:
        close_embedded(state)
    assert [p.payload["uri"] for p in partial] == ["/docs/bees.txt"]
    assert complete == 2 and by_name.count == 1


def test_prism_failed_lists_uri_item_extractor_and_reason(state, capsys):
    assert prism(["failed", "--collection", "docs", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{'URI':<44}  {'ITEM':<16}  {'EXTRACTOR':<16}  REASON",
                   f"{'/docs/bees.txt':<44}  {'chunk=0':<16}  {'digest':<16}  ValueError: cannot digest poison",
                   "1 item that an extractor failed on, in 1 file; run the job again to reprocess them"]
    assert prism(["failed", "--collection", "docs", "--extractor", "text", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().out == "no items that extractor 'text' failed on\n"
    assert prism(["failed", "--collection", "docs", "--extractor", "ocr", "--state-dir", str(state)]) == 1
    assert capsys.readouterr().err.startswith("prism failed: --extractor 'ocr': collection 'docs' has extractors")


def test_search_hits_name_their_failed_extractors_and_the_cli_points_to_prism_failed(state, capsys):
    from prism_pipeline.search import search

    hits = search("how do bees make honey", "docs", state_dir=state, limit=3).hits
    assert [(h.uri, h.failed_extractors) for h in hits][0] == ("/docs/bees.txt", ("digest",))
    assert all(h.failed_extractors == () for h in hits[1:])
    assert prism(["search", "how do bees make honey", "--collection", "docs", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().err == ("prism search: note: 1 result lacks an extractor's output "
                                       "(`prism failed --collection docs` lists them)\n")
    assert prism(["search", "whales", "--collection", "docs", "--limit", "1", "--state-dir", str(state)]) == 0
    assert capsys.readouterr().err == ""


def test_a_long_list_is_cut_at_the_limit_and_says_how_many_there_are(tmp_path, capsys):
    from prism_pipeline.extractors import build

    extractors = [text_extractor(), build(digest())]
    with Sink(QdrantSink(collection="docs"), extractors, tmp_path / "state") as sink:
        sink.prepare()
        sink.write(outcomes(poisoned_rows(tuple(DOCS)), extractors))
    close_embedded(tmp_path / "state")
    found = failed_items("docs", limit=2, state_dir=tmp_path / "state")
    assert found.total == 3 and len(found.items) == 2
    assert prism(["failed", "--collection", "docs", "--limit", "2", "--state-dir", str(tmp_path / "state")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "3 items that an extractor failed on, 2 listed (see --limit); run the job again to reprocess them")


def test_a_failed_record_is_complete_again_once_recorded_cleanly(state):
    bees = Written("/docs/bees.txt", content_hash(DOCS["bees.txt"]), 1)
    with Sink.open_existing("docs", state_dir=state) as sink:
        sink.record([bees._replace(failed_stage="digest")], "key-1")
        assert sink.records(["/docs/bees.txt"])["/docs/bees.txt"][FAILED_STAGE] == "digest"
        sink.record([bees], "key-1")
        assert sink.records(["/docs/bees.txt"])["/docs/bees.txt"] == {
            "uri": "/docs/bees.txt", "content_hash": bees.content_hash, "items": 1, "run_key": "key-1"}


@pytest.mark.filterwarnings("ignore:Failed to obtain server version")
def test_a_server_collection_indexes_the_failed_extractors_and_lists_them(tmp_path):
    from prism_pipeline.extractors import build
    from prism_pipeline.sink import point_fields
    from prism_pipeline.sink.server import QdrantWriter

    from .qdrant_server import QdrantStandIn

    server = QdrantStandIn()
    try:
        extractors = [text_extractor(), build(digest())]
        with Sink(QdrantSink(collection="docs", url=server.url), extractors) as sink:
            sink.prepare()
        assert server.indexes["docs"] == {"uri": "keyword", "failed_extractors": "keyword"}
        QdrantWriter(url=server.url, collection="docs", timeout_s=10, **point_fields(extractors))(
            R.to_batch(poisoned_rows()))
        found = failed_items("docs", url=server.url, state_dir=tmp_path / "unused")
        assert [(i.uri, [f.extractor for f in i.failures]) for i in found.items] == [("/docs/bees.txt", ["digest"])]

        # A collection written before the index existed gets it on the next run's prepare.
        del server.indexes["docs"]["failed_extractors"]
        with Sink(QdrantSink(collection="docs", url=server.url), extractors) as sink:
            sink.prepare()
            sink.record([Written("/docs/bees.txt", content_hash(DOCS["bees.txt"]), 1, "digest")], "key-1")
            assert sink.records(["/docs/bees.txt"])["/docs/bees.txt"][FAILED_STAGE] == "digest"
        assert server.indexes["docs"]["failed_extractors"] == "keyword"
    finally:
        server.close()


# -- real runs: local Ray, the embedded store --------------------------------------------------------------

def curable(antidote) -> dict:
    """A payload extractor that fails on text holding 'poison' until the antidote file exists."""
    return {"name": "digest", "kind": "python: tests.pipeline.plugins:PoisonedUntilCured", "batchSize": 8,
            "options": {"antidote": str(antidote)}}


def points_by_name(state, collection: str) -> dict[str, tuple[str, dict]]:
    client = embedded_client(state)
    points, _ = client.scroll(collection, limit=100, with_payload=True)
    return {p.payload["uri"].rsplit("/", 1)[-1]: (str(p.id), p.payload) for p in points}


def list_failed(state, collection: str, capsys) -> list[str]:
    args = argparse.Namespace(collection=collection, extractor=None, limit=100, state_dir=str(state), url=None)
    assert cmd_failed.run(args) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.slow
def test_a_rerun_extracts_only_the_partial_file_again_and_clears_its_marking(ray_session, tmp_path, capsys):
    from prism_pipeline.pipeline import run_job

    media = write_media(tmp_path / "media", images=0)
    (media / "poison.txt").write_text("this chunk holds poison")
    antidote, state = tmp_path / "antidote", tmp_path / "state"
    spec = spec_for(media, "partial", [curable(antidote), TEXT], failurePolicy={"maxFailedFileRatio": 0.5})

    first = run_job("partial", spec, state_dir=state)
    # As before: the job goes on, the file is in the failure ledger, its item is written without `digest`.
    assert first.ok and [(f.uri.rsplit("/", 1)[-1], f.stage) for f in first.failures] == [("poison.txt", "digest")]
    assert first.tracker.totals.items_failed == {"digest": 1} and first.points_in_collection == 5
    points = points_by_name(state, "partial")
    poison_id, poison = points["poison.txt"]
    assert "digest" not in poison and poison[PP.FAILED_EXTRACTORS] == ["digest"]
    assert poison[PP.FAILURE_REASONS] == {"digest": "ValueError: cannot digest poison"}
    assert all(p[PP.FAILED_EXTRACTORS] == [] and "digest" in p for n, (_, p) in points.items() if n != "poison.txt")
    listed = list_failed(state, "partial", capsys)
    assert listed[1].split() == [str(media / "poison.txt"), "chunk=0", "digest", "ValueError:", "cannot", "digest",
                                 "poison"]

    antidote.touch()  # the model is fixed; the files are unchanged
    second = run_job("partial", spec, state_dir=state)
    assert second.ok and second.failures == []
    assert second.tracker.totals.decodes == 1 and second.tracker.totals.files_skipped == 4
    assert second.points_in_collection == 5  # the same ids, overwritten
    points = points_by_name(state, "partial")
    assert points["poison.txt"][0] == poison_id == point_id(poison[PP.CONTENT_HASH], poison[PP.KEY])
    assert points["poison.txt"][1]["digest"] == {"chars": len("this chunk holds poison")}
    assert points["poison.txt"][1][PP.FAILED_EXTRACTORS] == [] and points["poison.txt"][1][PP.FAILURE_REASONS] == {}
    assert list_failed(state, "partial", capsys) == ["no items that an extractor failed on"]

    # The file changes and the extractor fails on it again: its new, partial point replaces the old
    # one (no duplicate under the old content hash), and its record does not count as complete.
    antidote.unlink()
    (media / "poison.txt").write_text("this chunk holds more poison")
    third = run_job("partial", spec, state_dir=state)
    assert third.tracker.totals.decodes == 1 and [f.stage for f in third.failures] == ["digest"]
    assert third.points_in_collection == 5
    new_id, new = points_by_name(state, "partial")["poison.txt"]
    assert new_id != poison_id and new[PP.FAILED_EXTRACTORS] == ["digest"]
    from prism_pipeline.extractors import build_all

    with Sink.open_existing("partial", state_dir=state) as sink:
        records = sink.records([str(p) for p in media.iterdir()])
    assert records[str(media / "poison.txt")][FAILED_STAGE] == "digest"
    plan = incremental.plan(spec, build_all(spec.extractors))
    skip_if = [uri for uri, r in records.items() if plan.decide(FileRef(uri, 0, r.get(FINGERPRINT, "")), r).unchanged]
    assert sorted(skip_if) == sorted(str(p) for p in media.iterdir() if p.name != "poison.txt")
