"""Suspend stops the Ray job and suspends the RayCluster; resume is a new attempt on the same cluster."""

from __future__ import annotations

import pytest

from e2e.support.jobs import condition
from e2e.support.waiting import wait_for

pytestmark = pytest.mark.e2e

START_TIMEOUT = 1200
STOP_TIMEOUT = 300
RUN_TIMEOUT = 1500
STOPPED = ("STOPPED", "FAILED")


def test_suspend_then_resume(jobs):
    name = jobs.apply("jobs/suspend.yaml")
    obj = jobs.wait_phase(name, ("Running",), START_TIMEOUT)
    st = obj["status"]
    cluster, first_attempt, first_ray_job = st["rayCluster"], st["attempt"], st["rayJob"]

    jobs.kubectl.merge_patch("extractionjob", name, {"spec": {"suspend": True}})
    obj = jobs.wait_phase(name, ("Suspended",), STOP_TIMEOUT)
    done_before = (obj["status"].get("progress") or {}).get("filesDone") or 0
    assert (condition(obj, "Suspended") or {}).get("status") == "True", obj["status"].get("conditions")

    def ray_job_stopped():
        ray_job = jobs.kubectl.get("rayjob", first_ray_job)
        return ray_job is None or (ray_job.get("status") or {}).get("jobStatus") in STOPPED

    wait_for(f"RayJob {first_ray_job} to be stopped or removed", ray_job_stopped, STOP_TIMEOUT)

    def cluster_suspended():
        ray_cluster = jobs.ray_cluster(cluster)
        assert ray_cluster is not None, f"suspend must keep RayCluster {cluster}, not delete it"
        return ray_cluster["spec"].get("suspend") is True and not jobs.ray_pods(cluster)

    wait_for(f"RayCluster {cluster} to be suspended with no pods", cluster_suspended, STOP_TIMEOUT,
             describe=lambda: f"pods: {[p['metadata']['name'] for p in jobs.ray_pods(cluster)]}")

    jobs.kubectl.merge_patch("extractionjob", name, {"spec": {"suspend": False}})
    obj = jobs.wait_phase(name, ("Succeeded",), RUN_TIMEOUT)
    st = obj["status"]
    assert st["rayCluster"] == cluster, "resume must reuse the suspended RayCluster"
    assert st["attempt"] > first_attempt and st["rayJob"] != first_ray_job, "resume starts a new attempt"
    assert (condition(obj, "Suspended") or {}).get("status", "False") == "False"
    if done_before:
        # incremental: what the first attempt wrote is skipped, not redone.
        assert (st["progress"].get("filesSkipped") or 0) >= done_before, (done_before, st["progress"])
