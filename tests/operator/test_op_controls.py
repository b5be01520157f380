"""End to end: suspend/resume, TTL cleanup, deletion with the finalizer, an operator restart mid-job,
an invalid spec, and running on an existing RayCluster."""

from __future__ import annotations

import asyncio
import random
import string

from .conftest import (
    child_names,
    condition,
    job_manifest,
    play_cluster_ready,
    play_rayjob,
    progress_text,
    wait_for,
    wait_for_events,
)


def creates(cluster, plural: str) -> int:
    return sum(1 for r in cluster.requests() if r.method == "POST" and r.resource is not None
               and r.resource.plural == plural)


def without_kueue(manifest: dict) -> dict:
    manifest["metadata"].pop("labels", None)
    return manifest


async def start_running(cluster, progress, manifest: dict):
    """Create the job and play KubeRay and Ray until attempt 1 runs; returns (cluster name, rayjob(n))."""
    created = await cluster.create_job(manifest)
    name, rayjob = child_names(created)
    await wait_for("attempt 1", lambda: cluster.rayjobs() == [rayjob(1)])
    play_cluster_ready(cluster, name)
    play_rayjob(cluster, rayjob(1), "RUNNING")
    progress.ray_jobs[rayjob(1)] = "RUNNING"
    await wait_for("Running", lambda: cluster.status().get("phase") == "Running", state=cluster.status)
    return name, rayjob


async def test_suspend_then_resume_starts_a_new_attempt(cluster, operator, progress):
    async with operator():
        name, rayjob = await start_running(cluster, progress, without_kueue(job_manifest()))

        await cluster.patch_job("campaign", {"spec": {"suspend": True}})
        await wait_for("Suspended", lambda: cluster.status().get("phase") == "Suspended", state=cluster.status)
        # The Ray job was stopped through the dashboard (and confirmed) before anything else.
        assert progress.stops[:1] == [rayjob(1)] and progress.ray_jobs[rayjob(1)] == "STOPPED"
        await wait_for("RayJob deleted", lambda: cluster.rayjobs() == [])
        rc = cluster.get("ray.io/v1", "rayclusters", name)
        assert rc["spec"]["suspend"] is True
        status = cluster.status()
        assert status["reason"] == "Suspending"  # until KubeRay has stopped the cluster's pods
        assert condition(status, "Suspended")["status"] == "True"
        assert condition(status, "Progressing")["status"] == "False"
        assert status["observedGeneration"] == 2
        cluster.set_child_status("rayclusters", name, {"state": "suspended"})
        await wait_for("settled", lambda: cluster.status().get("reason") == "Suspended", state=cluster.status)

        await cluster.patch_job("campaign", {"spec": {"suspend": False}})
        await wait_for("attempt 2", lambda: cluster.rayjobs() == [rayjob(2)] and cluster.status()["attempt"] == 2,
                       state=cluster.status)
        await wait_for("cluster resumed",
                       lambda: cluster.get("ray.io/v1", "rayclusters", name)["spec"]["suspend"] is False)
        status = cluster.status()
        assert status["phase"] in ("Provisioning", "Running") and status["attempt"] == 2
        assert status["failedAttempts"] == 0  # a resume is not a retry
        assert condition(status, "Suspended")["status"] == "False"
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(2), "SUCCEEDED", deployment="Complete")
        await wait_for("Succeeded", lambda: cluster.status().get("phase") == "Succeeded", state=cluster.status)
        assert cluster.clusters() == [name]


async def test_suspend_under_kueue_deletes_the_cluster_and_resume_requeues_it(cluster, operator, progress):
    """Kueue unsuspends an admitted RayCluster, so a suspended cluster would come back and hold quota:
    under Kueue, suspending deletes the owned RayCluster and resuming creates it again."""
    async with operator():
        # kueue.x-k8s.io/queue-name: gpu-batch
        name, rayjob = await start_running(cluster, progress, job_manifest())

        await cluster.patch_job("campaign", {"spec": {"suspend": True}})
        await wait_for("Suspended, cluster deleted", lambda: cluster.status().get("reason") == "Suspended"
                       and cluster.clusters() == [] and cluster.rayjobs() == [], state=cluster.status)
        assert progress.stops[:1] == [rayjob(1)]
        assert condition(cluster.status(), "ClusterReady")["reason"] == "NoCluster"

        await cluster.patch_job("campaign", {"spec": {"suspend": False}})
        await wait_for("a new cluster and attempt 2", lambda: cluster.clusters() == [name]
                       and cluster.rayjobs() == [rayjob(2)] and cluster.status()["attempt"] == 2,
                       state=cluster.status)
        rc = cluster.get("ray.io/v1", "rayclusters", name)
        assert rc["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-batch"
        assert rc["metadata"]["annotations"]["kueue.x-k8s.io/elastic-job"] == "true"
        rj = cluster.get("ray.io/v1", "rayjobs", rayjob(2))
        assert "kueue.x-k8s.io/queue-name" not in rj["metadata"]["labels"]
        assert cluster.status()["attempt"] == 2 and cluster.status()["failedAttempts"] == 0


async def test_ttl_deletes_the_cluster_after_a_final_progress_read(cluster, operator, progress):
    async with operator():
        created = await cluster.create_job(job_manifest(ttlSecondsAfterFinished=1))
        name, rayjob = child_names(created)
        await wait_for("attempt 1", lambda: cluster.rayjobs() == [rayjob(1)])
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(1), "RUNNING")
        progress.texts[f"media/{name}-head-svc"] = progress_text(total=3, done=1, items={"text": 5})
        await wait_for("progress", lambda: cluster.status().get("progress", {}).get("filesDone") == 1)

        # The pipeline finishes its last files and exits between two timer ticks.
        progress.texts[f"media/{name}-head-svc"] = progress_text(total=3, done=3, points=42,
                                                                  items={"text": 9}, finished=True)
        play_rayjob(cluster, rayjob(1), "SUCCEEDED", deployment="Complete")
        await wait_for("cluster deleted", lambda: cluster.clusters() == [], state=cluster.status)
        await wait_for("deletion recorded", lambda: condition(cluster.status(), "ClusterReady").get("reason")
                       == "ClusterDeleted", state=cluster.status)
        status = cluster.status()
        assert status["phase"] == "Succeeded"
        assert status["progress"]["filesDone"] == 3 and status["progress"]["pointsWritten"] == 42
        assert condition(status, "ClusterReady")["reason"] == "ClusterDeleted"
        assert cluster.job() is not None
        await wait_for_events(cluster, {"ClusterDeleted"})


async def test_delete_stops_the_ray_job_through_the_finalizer(cluster, operator, progress):
    async with operator():
        created = await cluster.create_job(job_manifest())
        name, rayjob = child_names(created)
        await wait_for("attempt 1", lambda: cluster.rayjobs() == [rayjob(1)])
        await wait_for("finalizer", lambda: "prism.dev/finalizer" in cluster.job()["metadata"].get("finalizers", []))
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(1), "RUNNING")
        progress.ray_jobs[rayjob(1)] = "RUNNING"
        await wait_for("Running", lambda: cluster.status().get("phase") == "Running", state=cluster.status)

        loop = asyncio.get_running_loop()
        started = loop.time()
        await cluster.delete_job("campaign")
        await wait_for("job gone", lambda: cluster.job() is None)
        assert loop.time() - started < 15  # not kopf's default minute of waiting for the timer
        assert cluster.rayjobs() == []
        assert set(progress.stops) == {rayjob(1)}  # stopped through the dashboard, not only by deleting the RayJob
        # The RayCluster goes with the job by owner reference (garbage collection, not emulated here).
        owners = cluster.get("ray.io/v1", "rayclusters", name)["metadata"]["ownerReferences"]
        assert owners[0]["uid"] == created["metadata"]["uid"]


async def test_operator_restart_mid_job_creates_no_duplicates(cluster, operator, progress):
    async with operator():
        created = await cluster.create_job(job_manifest())
        name, rayjob = child_names(created)
        await wait_for("attempt 1 recorded", lambda: cluster.status().get("attempt") == 1, state=cluster.status)
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(1), "RUNNING")
        await wait_for("Running", lambda: cluster.status().get("phase") == "Running", state=cluster.status)

    # Down for a while; KubeRay carries on and the pipeline makes progress.
    progress.texts[f"media/{name}-head-svc"] = progress_text(total=4, done=2, items={"text": 10})
    async with operator():
        await wait_for("progress after restart", lambda: cluster.status()["progress"]["filesDone"] == 2,
                       state=cluster.status)
        play_rayjob(cluster, rayjob(1), "SUCCEEDED", deployment="Complete")
        await wait_for("Succeeded", lambda: cluster.status().get("phase") == "Succeeded", state=cluster.status)
    assert cluster.clusters() == [name] and cluster.rayjobs() == [rayjob(1)]
    assert creates(cluster, "rayclusters") == 1 and creates(cluster, "rayjobs") == 1


async def test_invalid_spec_fails_and_creates_nothing(cluster, operator, progress):
    manifest = job_manifest()
    del manifest["spec"]["sink"]["qdrant"]["url"]  # embedded Qdrant is for `prism run` only
    manifest["spec"]["extractors"][1]["concurrency"] = {"min": 0}
    async with operator():
        await cluster.create_job(manifest)
        await wait_for("Failed", lambda: cluster.status().get("phase") == "Failed", state=cluster.status)
        status = cluster.status()
        assert status["reason"] == "InvalidSpec"
        assert "spec.extractors[1].concurrency.min: must be >= 1" in status["message"]
        assert condition(status, "Failed")["reason"] == "InvalidSpec"
        await wait_for_events(cluster, {"InvalidSpec"})
    assert cluster.clusters() == [] and cluster.rayjobs() == []
    assert creates(cluster, "rayclusters") == 0 and creates(cluster, "rayjobs") == 0


async def test_a_document_too_large_for_the_entrypoint_creates_nothing(cluster, operator, progress):
    manifest = job_manifest()
    noise = "".join(random.Random(3).choices(string.ascii_letters + string.digits, k=200 * 1024))
    # One extractor's options are bounded (prism_api.extractor_options): the noise is spread over four.
    manifest["spec"]["extractors"] = [{"name": f"t{i}", "kind": "python: noise.plugin:Noise",
                                       "options": {"blob": noise[i::4]}} for i in range(4)]
    async with operator():
        await cluster.create_job(manifest)
        await wait_for("Failed", lambda: cluster.status().get("phase") == "Failed", state=cluster.status)
        status = cluster.status()
        assert status["reason"] == "InvalidSpec" and "entrypoint limit" in status["message"]
        await wait_for_events(cluster, {"InvalidSpec"})
    assert cluster.clusters() == [] and cluster.rayjobs() == []
    assert creates(cluster, "rayclusters") == 0 and creates(cluster, "rayjobs") == 0


async def test_existing_cluster_owns_only_the_rayjob(cluster, operator, progress):
    manifest = job_manifest(cluster={"existing": "shared"})
    async with operator():
        created = await cluster.create_job(manifest)
        _, rayjob = child_names(created)
        await wait_for("cluster missing is reported", lambda: condition(cluster.status(), "ClusterReady")
                       .get("reason") == "ClusterNotFound", state=cluster.status)
        assert cluster.rayjobs() == []
        cluster.add_object("ray.io/v1", "rayclusters", {
            "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "shared", "namespace": "media"},
            "spec": {}, "status": {"state": "ready"}})
        await wait_for("RayJob on the shared cluster", lambda: cluster.rayjobs() == [rayjob(1)],
                       state=cluster.status)
        rj = cluster.get("ray.io/v1", "rayjobs", rayjob(1))
        assert rj["spec"]["clusterSelector"] == {"ray.io/cluster": "shared"}
        play_rayjob(cluster, rayjob(1), "SUCCEEDED", deployment="Complete")
        await wait_for("Succeeded", lambda: cluster.status().get("phase") == "Succeeded", state=cluster.status)
        assert cluster.status()["rayCluster"] == "shared"
    assert cluster.clusters() == ["shared"] and creates(cluster, "rayclusters") == 0
