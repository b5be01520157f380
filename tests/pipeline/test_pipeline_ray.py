"""The pipeline on a real local Ray, real extractors and the embedded Qdrant store."""

from __future__ import annotations

import threading
import urllib.request

import pytest

from prism_api import progress_report as metrics
from prism_pipeline.pipeline import run_job
from prism_pipeline.sink.embedded import embedded_client

from .conftest import FACES, TEXT, spec_for, write_media

pytestmark = pytest.mark.slow

POISON = {"name": "digest", "kind": "python: tests.pipeline.plugins:Poisoned", "batchSize": 8}


def scrape(actor) -> dict[str, float]:
    """The progress endpoint's samples, read over HTTP as the operator reads them."""
    import ray

    port = ray.get(actor.port.remote(), timeout=30)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}{metrics.PROGRESS_PATH}", timeout=10).read().decode()
    samples: dict[str, float] = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.mark.parametrize("extractors", [[TEXT], [TEXT, FACES, POISON]], ids=["1-extractor", "3-extractors"])
def test_every_file_is_decoded_once(ray_session, tmp_path, extractors):
    media = write_media(tmp_path / "media", images=2)
    actors = []
    spec = spec_for(media, "decodes", extractors)
    result = run_job("decodes", spec, state_dir=tmp_path / "state", progress_port=0, on_progress=actors.append)

    files = len(list(media.iterdir()))
    assert result.ok, result.message
    assert result.tracker.files_total == files
    assert result.tracker.totals.decodes == files
    assert result.tracker.totals.files_done == files
    served = scrape(actors[0])
    job = 'job="decodes",namespace="",attempt="1"'
    assert served[f'{metrics.DECODES}{{{job}}}'] == files
    assert served[f'{metrics.FILES_TOTAL}{{{job}}}'] == files
    assert served[f'{metrics.PIPELINE_FINISHED}{{{job}}}'] == 1
    verdicts = [v for k, v in served.items() if k.startswith(f'{metrics.OUTCOME}{{{job},outcome="Succeeded",message="')]
    assert verdicts == [1]
    # one point per item: 4 text documents of one chunk each, 2 images
    assert result.points_in_collection == result.tracker.totals.points_written == 6
    assert result.tracker.totals.items["text"] == 4
    if len(extractors) == 3:
        assert result.tracker.totals.items["faces"] == 2
        assert result.tracker.totals.items["digest"] == 4
        assert served[f'{metrics.ITEMS}{{{job},extractor="faces"}}'] == 2


def test_corrupt_files_are_counted_and_the_job_succeeds(ray_session, tmp_path):
    media = write_media(tmp_path / "media", images=1, corrupt=True)
    spec = spec_for(media, "corrupt", [TEXT], failurePolicy={"maxFailedFileRatio": 0.5})
    result = run_job("corrupt", spec, state_dir=tmp_path / "state")

    assert result.ok, result.message
    failed = {f.uri.rsplit("/", 1)[-1]: f for f in result.failures}
    assert set(failed) == {"truncated.jpg", "empty.txt", "notes.xyz"}
    assert failed["empty.txt"].stage == "decode" and "zero-byte" in failed["empty.txt"].error
    assert "unsupported" in failed["notes.xyz"].error
    assert result.tracker.totals.files_failed == 3 and result.tracker.totals.files_done == 5
    assert result.points_in_collection == 5  # 4 text chunks + 1 image; nothing for the bad files


def test_too_many_failures_fail_the_job(ray_session, tmp_path):
    media = write_media(tmp_path / "media", images=0, corrupt=True)
    spec = spec_for(media, "strict", [TEXT], failurePolicy={"maxFailedFileRatio": 0.1})
    result = run_job("strict", spec, state_dir=tmp_path / "state")
    assert not result.ok
    assert "too many files failed" in result.message


def test_one_failing_item_keeps_its_batch_mates(ray_session, tmp_path):
    media = write_media(tmp_path / "media", images=0)
    (media / "poison.txt").write_text("this chunk holds poison")
    spec = spec_for(media, "poison", [POISON, TEXT], failurePolicy={"maxFailedFileRatio": 0.5})
    result = run_job("poison", spec, state_dir=tmp_path / "state")

    assert result.ok
    assert [(f.uri.rsplit("/", 1)[-1], f.stage) for f in result.failures] == [("poison.txt", "digest")]
    assert result.tracker.totals.items["digest"] == 4 and result.tracker.totals.items_failed["digest"] == 1
    client = embedded_client(tmp_path / "state")
    points, _ = client.scroll("poison", limit=100, with_payload=True)
    by_name = {p.payload["uri"].rsplit("/", 1)[-1]: p.payload for p in points}
    assert all("digest" in by_name[n] for n in ("bees.txt", "space.txt", "ocean.txt", "volcano.md"))
    # the failing item is still written with what the other extractors produced, naming what failed
    assert "digest" not in by_name["poison.txt"] and by_name["poison.txt"]["failed_extractors"] == ["digest"]


def test_rerun_overwrites_points(ray_session, tmp_path):
    media = write_media(tmp_path / "media")
    spec = spec_for(media, "rerun", [TEXT], incremental=False)
    first = run_job("rerun", spec, state_dir=tmp_path / "state")
    second = run_job("rerun", spec, state_dir=tmp_path / "state")
    assert first.points_in_collection == second.points_in_collection == 6
    assert second.tracker.totals.decodes == 6  # not incremental: everything is processed again


def test_incremental_rerun_decodes_nothing(ray_session, tmp_path):
    media = write_media(tmp_path / "media")
    spec = spec_for(media, "incr", [TEXT])
    first = run_job("incr", spec, state_dir=tmp_path / "state")
    second = run_job("incr", spec, state_dir=tmp_path / "state")
    assert first.tracker.totals.decodes == 6
    assert second.tracker.totals.decodes == 0
    assert second.tracker.totals.files_skipped == 6 and second.points_in_collection == 6

    # A changed file is decoded again and its old points are replaced, not kept beside the new ones.
    (media / "bees.txt").write_text("Bumblebees are larger and hairier than honeybees.")
    third = run_job("incr", spec, state_dir=tmp_path / "state")
    assert third.tracker.totals.decodes == 1 and third.tracker.totals.files_skipped == 5
    assert third.points_in_collection == 6

    # Changing an extractor's options changes its fingerprint: every file is processed again.
    changed = spec_for(media, "incr", [{**TEXT, "options": {"normalize": False}}])
    fourth = run_job("incr", changed, state_dir=tmp_path / "state")
    assert fourth.tracker.totals.decodes == 6


def test_two_jobs_at_once_on_one_ray(ray_session, tmp_path):
    """Elastic pools (min 1, max 2) let two jobs share the cluster; fixed pools could starve one."""
    results = {}

    def one(name: str) -> None:
        media = write_media(tmp_path / name / "media", images=2)
        # Half a CPU per actor: four actors leave two of the session's four CPUs for read tasks.
        pool = {"concurrency": {"min": 1, "max": 2}, "resources": {"cpu": 0.5}}
        spec = spec_for(media, name, [{**TEXT, **pool}, {**FACES, **pool}], stallTimeoutSeconds=240)
        results[name] = run_job(name, spec, state_dir=tmp_path / name / "state")

    threads = [threading.Thread(target=one, args=(n,)) for n in ("job-a", "job-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=500)
    assert not any(t.is_alive() for t in threads)
    assert sorted(results) == ["job-a", "job-b"]
    for result in results.values():
        assert result.ok and result.tracker.totals.files_done == 6 and result.points_in_collection == 6


def test_server_mode_writes_through_writer_actors_with_retries(ray_session, tmp_path):
    """Server mode: writer actors upsert over HTTP in batches of sink.batchSize, retrying a 503."""
    from .qdrant_server import QdrantStandIn

    server = QdrantStandIn(fail_upserts=2)
    try:
        media = write_media(tmp_path / "media")
        sink = {"qdrant": {"collection": "remote", "url": server.url, "batchSize": 2, "timeoutSeconds": 10}}
        spec = spec_for(media, "remote", [TEXT, FACES], sink=sink)
        first = run_job("remote", spec, state_dir=tmp_path / "state")
        assert first.ok, first.message
        assert first.points_in_collection == server.local.count("remote").count == 6
        assert server.upserts >= 3 + 2  # six points in batches of at most two, after two refusals
        assert not (tmp_path / "state" / "qdrant").exists()  # nothing embedded in server mode

        second = run_job("remote", spec, state_dir=tmp_path / "state")
        assert second.tracker.totals.decodes == 0 and second.tracker.totals.files_skipped == 6
    finally:
        server.close()
