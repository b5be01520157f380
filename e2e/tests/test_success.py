"""The whole path: MinIO -> RayCluster + RayJob -> Qdrant, with progress visible in `kubectl get xj`."""

from __future__ import annotations

import pytest

from e2e.support.jobs import condition

pytestmark = pytest.mark.e2e

# Provisioning (the worker image is already on the node) plus a paced run of ~20 items.
RUN_TIMEOUT = 1500
COLLECTION = "e2e-success"
CORRUPT = "s3://media/photos/broken_truncated.jpg"  # made truncated on purpose by examples/make_media.py


def strings(value):
    """Every string inside a payload, however it is nested."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def test_job_succeeds_with_rising_progress_and_points_in_qdrant(jobs, qdrant, media_uris):
    name = jobs.apply("jobs/success.yaml")  # drops the collection of a former run first
    percents: list[int] = []
    phases: list[str] = []

    def watch(obj):
        if obj is None:
            return
        row = jobs.kubectl.table("extractionjob", name)  # what `kubectl get xj NAME` shows
        if row.get("PROGRESS", "").isdigit():
            percents.append(int(row["PROGRESS"]))
        if row.get("PHASE") and (not phases or phases[-1] != row["PHASE"]):
            phases.append(row["PHASE"])

    obj = jobs.wait_phase(name, ("Succeeded",), RUN_TIMEOUT, on_poll=watch)
    st = obj["status"]
    progress = st["progress"]
    print(f"phases seen: {phases}; progress seen: {percents}")

    assert "Running" in phases, f"`kubectl get xj` never showed Running: {phases}"
    assert percents == sorted(percents), f"progress went backwards in `kubectl get xj`: {percents}"
    assert any(0 < p < 100 for p in percents), (
        f"`kubectl get xj` never showed progress between 0 and 100 while the job ran: {percents}")
    assert progress["percent"] == 100
    assert st["attempt"] == 1, "the job needed a retry; it should succeed first time"
    assert st.get("rayCluster") and st.get("rayJob", "").startswith(st["rayCluster"] + "-a")
    assert (condition(obj, "Succeeded") or {}).get("status") == "True", obj["status"].get("conditions")

    # Every uploaded file is accounted for; the corrupt one is recorded, not fatal.
    assert progress["filesTotal"] == len(media_uris)
    assert progress["filesDone"] + progress["filesFailed"] + progress.get("filesSkipped", 0) == len(media_uris)
    samples = {s["uri"] for s in (st.get("failures") or {}).get("samples", [])}
    assert samples == {CORRUPT}, f"expected only the truncated JPEG to fail, got {samples}"
    assert progress["filesFailed"] == 1

    # The points are in the Qdrant server, one source URI per processed file.
    info = qdrant.collection(COLLECTION)
    assert info is not None, f"collection {COLLECTION} was not created"
    vectors = info["config"]["params"]["vectors"]
    assert vectors.get("text", {}).get("size") == 384, f"named vector 'text' (MiniLM, 384) missing: {vectors}"
    count = qdrant.count(COLLECTION)
    assert 0 < count <= progress["pointsWritten"], (count, progress["pointsWritten"])
    sources = {s for p in qdrant.points(COLLECTION) for s in strings(p["payload"]) if s.startswith("s3://media/")}
    assert sources == set(media_uris) - {CORRUPT}, (
        f"points missing for {sorted(set(media_uris) - {CORRUPT} - sources)}; unexpected: {sorted(sources - set(media_uris))}")
