"""Scale: the listing streams into the pipeline, incremental re-runs skip from the listing's
fingerprint without reading a byte, and the driver's state stays bounded. Real local Ray, real
embedded store, real moto S3 server."""

from __future__ import annotations

import os
import threading
import time

import pytest

from prism_pipeline import feed
from prism_pipeline.incremental import plan
from prism_pipeline.ledger import FAILURE_SAMPLES, FileTracker
from prism_pipeline.lister import Lister
from prism_pipeline.pipeline import run_job
from prism_pipeline.sink import Sink
from prism_pipeline.sources import FileRef, Listing, iter_source
from tests.sources.conftest import BUCKET, PREFIX, aws_env, s3_endpoint  # noqa: F401 (fixtures)

from .conftest import TEXT, spec_for, write_media

pytestmark = pytest.mark.slow


def test_an_unchanged_rerun_reads_no_bytes_and_starts_no_pipeline(ray_session, tmp_path, caplog):
    media = write_media(tmp_path / "media", images=1)
    spec = spec_for(media, "fp", [TEXT])
    state = tmp_path / "state"
    first = run_job("fp", spec, state_dir=state)
    assert first.ok and first.tracker.totals.decodes == 5

    caplog.set_level("INFO", logger="prism.pipeline")
    second = run_job("fp", spec, state_dir=state)
    t = second.tracker.totals
    assert (t.files_skipped, t.decodes, t.bytes_read) == (5, 0, 0), "skipped from the listing alone"
    assert "no pipeline started" in caplog.text
    assert second.points_in_collection == first.points_in_collection

    # Touched, same bytes: its read task hashes it (bytes read), skips the decode, and re-records the
    # new fingerprint, so the run after that skips it from the listing again.
    bees = media / "bees.txt"
    st = bees.stat()
    os.utime(bees, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    third = run_job("fp", spec, state_dir=state)
    t = third.tracker.totals
    assert (t.files_skipped, t.decodes, t.bytes_read) == (5, 0, bees.stat().st_size)
    fourth = run_job("fp", spec, state_dir=state)
    assert (fourth.tracker.totals.decodes, fourth.tracker.totals.bytes_read) == (0, 0)

    # Changed bytes: extracted again, its old points replaced (same count), the rest untouched.
    bees.write_text("Bumblebees are larger and hairier than honeybees, and they nest in the ground.")
    fifth = run_job("fp", spec, state_dir=state)
    t = fifth.tracker.totals
    assert (t.decodes, t.files_skipped, t.bytes_read) == (1, 4, bees.stat().st_size)
    assert fifth.points_in_collection == first.points_in_collection

    # --full (incremental off) reads and extracts everything.
    full = run_job("fp", spec.model_copy(update={"incremental": False}), state_dir=state)
    assert full.tracker.totals.decodes == 5


def test_an_unchanged_rerun_over_s3_reads_no_bytes(ray_session, s3_endpoint, tmp_path):  # noqa: F811
    source = {"uri": f"s3://{BUCKET}/{PREFIX}/", "endpoint": s3_endpoint, "include": ["docs/*.txt", "docs/*.md"]}
    spec = spec_for(source["uri"], "s3-fp", [TEXT], source=source)
    first = run_job("s3-fp", spec, state_dir=tmp_path / "state")
    assert first.ok and first.tracker.totals.files_done >= 2 and first.tracker.totals.bytes_read > 0
    again = run_job("s3-fp", spec, state_dir=tmp_path / "state")
    t = again.tracker.totals
    assert (t.files_skipped, t.decodes, t.bytes_read) == (first.tracker.totals.files_done, 0, 0)


def test_s3_listing_comes_in_pages_of_a_thousand_keys(s3_endpoint):  # noqa: F811
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="many")
    for i in range(2100):
        s3.put_object(Bucket="many", Key=f"tiny/{i:05d}.txt", Body=b"x")
    from prism_api import SourceSpec

    pages = iter_source(SourceSpec(uri="s3://many/tiny/", endpoint=s3_endpoint, region="us-east-1"))
    first = next(pages)
    assert len(first.refs) == 1000 and first.refs[0].uri == "s3://many/tiny/00000.txt"
    assert first.refs[0].fingerprint.startswith("etag:") and len(first.refs[0].fingerprint) > 10
    rest = [len(p.refs) for p in pages]
    assert sum(rest) == 1100 and max(rest) <= 1000


def test_a_local_listing_streams_in_pages(tmp_path):
    from prism_api import SourceSpec

    for d in range(3):
        (tmp_path / f"d{d}").mkdir()
        for i in range(700):
            (tmp_path / f"d{d}" / f"{i:04d}.txt").write_text("x")
    pages = list(iter_source(SourceSpec(uri=str(tmp_path)), page_size=500))
    sizes = [len(p.refs) for p in pages]
    assert sum(sizes) == 2100 and max(sizes) == 500
    ref = pages[0].refs[0]
    st = os.stat(ref.uri)
    assert ref.fingerprint == f"{st.st_size}:{st.st_mtime_ns}"


def test_the_first_files_are_fed_before_the_listing_ends(ray_session, tmp_path):
    """The listing thread puts a page's files into the feed while the next page is still being
    listed: a listing blocked after its first page has already fed the stream."""
    from prism_pipeline.progress_actor import start_progress_actor

    gate = threading.Event()

    def pages():
        yield Listing([FileRef(f"/nowhere/{i}.txt", 10, "10:1") for i in range(100)], [])
        gate.wait(60)
        yield Listing([FileRef(f"/nowhere/more-{i}.txt", 10, "10:1") for i in range(50)], [])

    spec = spec_for(tmp_path, "feed", [TEXT])
    progress, _ = start_progress_actor("feed", 0, None)
    tracker = FileTracker()
    with Sink(spec.sink.qdrant, [], tmp_path / "state") as sink:
        lister = Lister(str(tmp_path), pages(), plan(spec, []), sink, tracker, progress)
        lister.start()
        try:
            assert lister.feeding.wait(60)
            firsts = [lister.queue.get(timeout=60) for _ in range(7)]
            assert [len(b["uri"]) for b in firsts] == [1, 2, 4, 8, 16, 32, 37], "slow start, then the page's rest"
            assert firsts[0]["uri"] == ["/nowhere/0.txt"] and firsts[1]["uri"][0] == "/nowhere/1.txt"
            assert not lister.done.is_set() and tracker.files_total == 100 and tracker.in_stream == 100
            import ray

            report = ray.get(progress.snapshot.remote(), timeout=30)
            assert (report.files_total, report.listing_complete) == (100, False)
            gate.set()
            blocks = [lister.queue.get(timeout=60) for _ in range(2)]
            assert len(blocks[0]["uri"]) == 50, "full blocks after the slow start"
            assert blocks[1] is None, "the end of the stream"
            assert lister.done.wait(30) and lister.complete and lister.sent == 150
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                report = ray.get(progress.snapshot.remote(), timeout=30)
                if report.listing_complete:
                    break
                time.sleep(0.2)
            assert (report.files_total, report.listing_complete) == (150, True)
        finally:
            gate.set()
            lister.close()
            ray.kill(progress)


def test_blocks_group_small_files_and_keep_large_ones_apart():
    rows = [{"uri": f"/s{i}", "size": 10, "prev_hash": ""} for i in range(130)]
    rows.insert(5, {"uri": "/video", "size": 100 * 1024**2, "prev_hash": ""})
    sizes = [len(b["uri"]) for b in feed.blocks(rows)]
    assert sizes == [5, 1, 64, 61]
    assert [b["uri"] for b in feed.blocks(rows)][1] == ["/video"]
    slow_start = feed.Blocker(files=64, first=1)
    assert [len(b["uri"]) for b in slow_start.split(rows)] == [1, 2, 2, 1, 16, 32, 64, 13]
    photos = [{"uri": f"/p{i}", "size": 1_500_000, "prev_hash": ""} for i in range(10)]
    assert [len(b["uri"]) for b in feed.blocks(photos)] == [2, 2, 2, 2, 2], "a few MB per block: decodes stay parallel"


def test_the_trackers_memory_does_not_grow_with_the_job(tmp_path):
    """Finished files are not kept; failures spill to a temporary ledger, only samples stay."""
    t = FileTracker()
    t.listed(20_000)
    for i in range(20_000):
        uri = f"/f/{i}.txt"
        t.expect(uri)
        if i % 2:
            t.observe({"uri": uri, "status": "failed", "errors": [{"stage": "read", "error": f"{uri}: missing"}]})
        else:
            t.observe({"uri": uri, "key": uri, "status": "empty", "content_hash": "h", "file_items": 0, "errors": []})
    t.close()
    assert t.in_stream == 0 and len(t.samples) == FAILURE_SAMPLES
    assert (t.totals.files_done, t.totals.files_failed) == (10_000, 10_000)
    assert sum(1 for _ in t.iter_failures()) == 10_000
    assert t.failure_reasons() == {("read", "missing"): 10_000}
    ledger = tmp_path / "failures.jsonl"
    t.write(ledger)
    assert len(ledger.read_text().splitlines()) == 10_000


def test_the_feed_hands_each_block_on_before_the_listing_ends(ray_session):
    """Ray Data merges a read task's small outputs until the task ends; the feed's one task lives as
    long as the listing, so its blocks must move on as they are yielded (feed._hand_on_as_yielded)."""
    queue = feed.make_queue()
    got: list = []

    def drain():
        for batch in feed.dataset(queue).iter_batches(batch_size=None, batch_format="numpy"):
            got.append(list(batch["uri"]))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        queue.put({"uri": ["/a", "/b"], "size": [1, 1], "prev_hash": ["", ""]})
        deadline = time.monotonic() + 90
        while not got and time.monotonic() < deadline:
            time.sleep(0.2)
        assert got == [["/a", "/b"]], "the first block came through while the feed was still open"
        queue.put({"uri": ["/c"], "size": [1], "prev_hash": [""]})
    finally:
        queue.put(None)
        reader.join(90)
    assert got == [["/a", "/b"], ["/c"]] and not reader.is_alive()


def test_the_listing_waits_while_too_many_files_are_in_the_stream(ray_session, tmp_path, monkeypatch):
    """The listing runs at most IN_FLIGHT_FILES ahead of the outcomes: driver memory and the queue in
    front of the read stage stay bounded however fast the source lists."""
    import prism_pipeline.lister as L
    from prism_pipeline.progress_actor import start_progress_actor

    monkeypatch.setattr(L, "IN_FLIGHT_FILES", 150)
    pages = iter([Listing([FileRef(f"/p{n}/{i}.txt", 10, "10:1") for i in range(100)], []) for n in range(3)])
    spec = spec_for(tmp_path, "bound", [TEXT])
    progress, _ = start_progress_actor("bound", 0, None)
    tracker = FileTracker()
    with Sink(spec.sink.qdrant, [], tmp_path / "state") as sink:
        lister = Lister(str(tmp_path), pages, plan(spec, []), sink, tracker, progress)
        lister.start()
        try:
            deadline = time.monotonic() + 180  # the feed's actor starts first (slow on a loaded machine)
            while (tracker.files_total < 200 or lister.sent < 100) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
            assert (tracker.files_total, tracker.in_stream, lister.sent) == (200, 100, 100), "the second page waits"
            for i in range(60):  # outcomes come back for 60 files of the first page
                tracker.observe({"uri": f"/p0/{i}.txt", "key": "k", "status": "empty", "content_hash": "h",
                                 "file_items": 0, "errors": []})
            deadline = time.monotonic() + 60
            while lister.sent < 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert lister.sent == 200 and tracker.in_stream == 140 and not lister.done.is_set(), "the third waits"
        finally:
            lister.close()
            import ray

            ray.kill(progress)
