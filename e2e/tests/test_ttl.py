"""ttlSecondsAfterFinished deletes the RayCluster; the ExtractionJob and its final status stay."""

from __future__ import annotations

import pytest

from e2e.support.waiting import wait_for

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 1200
GRACE = 180  # the operator's timer, KubeRay's and the garbage collector's reactions


def test_ttl_deletes_the_ray_cluster_and_keeps_the_job(jobs):
    name = jobs.apply("jobs/ttl.yaml")
    obj = jobs.wait_phase(name, ("Succeeded",), RUN_TIMEOUT)
    st = obj["status"]
    cluster = st["rayCluster"]
    ttl = obj["spec"]["ttlSecondsAfterFinished"]

    wait_for(f"RayCluster {cluster} to be deleted {ttl}s after the job finished",
             lambda: jobs.ray_cluster(cluster) is None, ttl + GRACE)
    wait_for(f"the pods of RayCluster {cluster} to be gone", lambda: not jobs.ray_pods(cluster), GRACE)

    after = jobs.get(name)
    assert after is not None, "TTL must not delete the ExtractionJob"
    kept = after["status"]
    assert kept["phase"] == "Succeeded"
    assert kept.get("completionTime")
    assert kept["progress"]["filesDone"] == st["progress"]["filesDone"] > 0
    assert kept["progress"]["pointsWritten"] == st["progress"]["pointsWritten"] > 0
