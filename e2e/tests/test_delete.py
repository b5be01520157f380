"""Deleting a running ExtractionJob: the finalizer stops the Ray job; owner references remove the rest."""

from __future__ import annotations

import pytest

from e2e.support.waiting import wait_for
from prism_api.conventions import FINALIZER

pytestmark = pytest.mark.e2e

START_TIMEOUT = 1200
GONE_TIMEOUT = 300


def test_delete_running_job_removes_its_children(jobs):
    name = jobs.apply("jobs/delete.yaml")
    obj = jobs.wait_phase(name, ("Running",), START_TIMEOUT)
    st = obj["status"]
    cluster, ray_job = st["rayCluster"], st["rayJob"]
    assert FINALIZER in obj["metadata"].get("finalizers", []), obj["metadata"].get("finalizers")
    owners = (jobs.ray_cluster(cluster) or {}).get("metadata", {}).get("ownerReferences", [])
    assert any(o.get("uid") == obj["metadata"]["uid"] and o.get("controller") for o in owners), owners

    jobs.delete_and_wait(name, GONE_TIMEOUT)
    wait_for(f"RayJob {ray_job} to be gone", lambda: jobs.kubectl.get("rayjob", ray_job) is None, GONE_TIMEOUT)
    wait_for(f"RayCluster {cluster} to be gone", lambda: jobs.ray_cluster(cluster) is None, GONE_TIMEOUT)
    wait_for(f"the pods of RayCluster {cluster} to be gone", lambda: not jobs.ray_pods(cluster), GONE_TIMEOUT)
    assert not jobs.ray_jobs(name), "a RayJob of the deleted job is left"
