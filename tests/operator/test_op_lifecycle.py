"""End to end: the real kopf runtime against the emulated API server, the test playing KubeRay and the
pipeline's progress endpoint. Creation, status and progress, retries, deadlines."""

from __future__ import annotations

import asyncio

import aiohttp

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


async def test_create_children_progress_and_success(cluster, operator, progress):
    async with operator() as op:
        created = await cluster.create_job(job_manifest())
        name, rayjob = child_names(created)
        await wait_for("RayCluster and RayJob attempt 1", lambda: cluster.clusters() == [name]
                       and cluster.rayjobs() == [rayjob(1)], state=cluster.status)

        rc, rj = cluster.get("ray.io/v1", "rayclusters", name), cluster.get("ray.io/v1", "rayjobs", rayjob(1))
        owner = {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob", "name": "campaign",
                 "uid": created["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        assert rc["metadata"]["ownerReferences"] == [owner] == rj["metadata"]["ownerReferences"]
        assert rc["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-batch"
        assert rj["spec"]["clusterSelector"] == {"ray.io/cluster": name}
        assert "--job" in rj["spec"]["entrypoint"] and "--attempt 1" in rj["spec"]["entrypoint"]
        await wait_for("Provisioning", lambda: cluster.status().get("phase") == "Provisioning",
                       state=cluster.status)
        assert condition(cluster.status(), "ClusterReady")["status"] == "False"
        assert cluster.status()["observedGeneration"] == 1

        # KubeRay brings the cluster up and starts the job; the pipeline reports progress.
        service = f"media/{name}-head-svc"
        progress.texts[service] = progress_text(total=10, done=4, failed=1, points=400,
                                                items={"text": 300, "faces": 100},
                                                samples=[("s3://media/campaign/bad.mp4", "decode", "truncated")])
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(1), "RUNNING")
        await wait_for("Running with progress", lambda: cluster.status().get("phase") == "Running"
                       and cluster.status()["progress"]["filesDone"] == 4
                       and condition(cluster.status(), "ClusterReady")["status"] == "True", state=cluster.status)
        status = cluster.status()
        assert status["progress"]["summary"] == "5/10" and status["progress"]["percent"] == 50
        assert status["progress"]["pointsWritten"] == 400
        assert status["progress"]["extractors"] == [{"name": "text", "itemsDone": 300, "itemsFailed": 0},
                                                    {"name": "faces", "itemsDone": 100, "itemsFailed": 0}]
        assert status["failures"] == {"count": 1, "samples": [
            {"uri": "s3://media/campaign/bad.mp4", "stage": "decode", "error": "truncated"}]}
        assert status["usage"]["cpuSeconds"] == 12.5
        assert status["rayJob"] == rayjob(1) and status["attempt"] == 1
        assert status["dashboardURL"] == "raycluster-head-svc:8265"

        # Nothing moves: the timer keeps reading but writes nothing.
        def status_patches() -> int:
            return sum(1 for r in cluster.requests() if r.method == "PATCH" and r.resource is not None
                       and r.resource.plural == "extractionjobs" and "status" in (r.data or {}))

        reads = progress.hits[service]
        before = status_patches()
        await wait_for("four more progress reads", lambda: progress.hits[service] >= reads + 4)
        assert status_patches() == before

        progress.texts[service] = progress_text(total=10, done=9, failed=1, points=900,
                                                items={"text": 700, "faces": 200}, finished=True)
        await wait_for("progress moves", lambda: cluster.status()["progress"]["filesDone"] == 9,
                       state=cluster.status)
        play_rayjob(cluster, rayjob(1), "SUCCEEDED", deployment="Complete")
        await wait_for("Succeeded", lambda: cluster.status().get("phase") == "Succeeded", state=cluster.status)
        status = cluster.status()
        assert status["completionTime"] and status["progress"]["percent"] == 100
        assert condition(status, "Ready")["status"] == "True"
        assert condition(status, "Succeeded")["status"] == "True"
        assert condition(status, "Progressing")["status"] == "False"
        assert not any(k.startswith("create") or k.startswith("kopf") for k in status), status.keys()
        await wait_for_events(cluster, {"Running", "Succeeded"})

        # It ended with a failed file: its debug record is settled first (the dashboard here does not
        # know the submission: nothing to save, said in status.debug).
        await wait_for("the debug record settled", lambda: cluster.status().get("debug"), state=cluster.status)
        # Finished with no TTL: the timer stops, the job costs no more API calls.
        def cluster_reads() -> int:
            return sum(1 for r in cluster.requests() if r.method == "GET" and r.resource is not None
                       and r.resource.plural == "rayclusters")

        await asyncio.sleep(0.5)  # let a tick that was under way finish
        reads = cluster_reads()
        await asyncio.sleep(1.0)  # four timer intervals
        assert cluster_reads() == reads

        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{op.runtime.metrics_port}/metrics") as response:
                text = await response.text()
            async with session.get(f"http://127.0.0.1:{op.liveness_port}/healthz") as response:
                assert response.status == 200
                assert (await response.json())["reconciler"] is True
        assert 'prism_operator_jobs{phase="Succeeded"} 1.0' in text
        assert 'prism_operator_job_files_done{job="campaign",namespace="media"} 9.0' in text
        assert "prism_operator_reconcile_seconds_count" in text
    # kopf kept its bookkeeping out of status, in annotations only.
    meta = cluster.job()["metadata"]
    assert any(k.startswith("prism.dev/") for k in meta.get("annotations", {})), meta


async def test_failed_attempt_retries_on_the_same_cluster(cluster, operator, progress):
    async with operator():
        created = await cluster.create_job(job_manifest(retries={"limit": 1}))
        name, rayjob = child_names(created)
        await wait_for("attempt 1", lambda: cluster.rayjobs() == [rayjob(1)])
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(1), "RUNNING")
        await wait_for("Running", lambda: cluster.status().get("phase") == "Running", state=cluster.status)

        # KubeRay gives up on the attempt while Ray still runs it (and would never stop it).
        progress.ray_jobs[rayjob(1)] = "RUNNING"
        progress.stop_works = False
        play_rayjob(cluster, rayjob(1), "FAILED", deployment="Failed", message="worker OOM-killed")
        await wait_for("StoppingAttempt", lambda: cluster.status().get("reason") == "StoppingAttempt"
                       and len(progress.stops) >= 2, state=cluster.status)
        assert rayjob(2) not in cluster.rayjobs() and cluster.status()["attempt"] == 1
        progress.stop_works = True
        await wait_for("attempt 2", lambda: rayjob(2) in cluster.rayjobs() and cluster.status()["attempt"] == 2,
                       state=cluster.status)
        assert progress.ray_jobs[rayjob(1)] == "STOPPED" and set(progress.stops) == {rayjob(1)}
        status = cluster.status()
        assert status["phase"] == "Running" and status["failedAttempts"] == 1
        retrying = condition(status, "Retrying")
        assert retrying["status"] == "True" and "worker OOM-killed" in retrying["message"]
        second = cluster.get("ray.io/v1", "rayjobs", rayjob(2))
        assert second["spec"]["clusterSelector"] == {"ray.io/cluster": name}
        assert cluster.clusters() == [name]

        play_rayjob(cluster, rayjob(2), "RUNNING")
        await wait_for("Retrying cleared", lambda: condition(cluster.status(), "Retrying").get("status") == "False",
                       state=cluster.status)
        play_rayjob(cluster, rayjob(2), "FAILED", deployment="Complete", message="worker OOM-killed again")
        await wait_for("Failed", lambda: cluster.status().get("phase") == "Failed", state=cluster.status)
        status = cluster.status()
        assert status["reason"] == "RetriesExhausted"
        assert "worker OOM-killed again" in status["message"]
        assert cluster.rayjobs() == [rayjob(1), rayjob(2)] and cluster.clusters() == [name]
        await wait_for_events(cluster, {"StoppingAttempt", "AttemptFailed", "RetriesExhausted"})


async def test_startup_deadline_reports_pod_problems(cluster, operator, progress):
    async with operator():
        created = await cluster.create_job(job_manifest(startupDeadlineSeconds=2))
        name, rayjob = child_names(created)
        await wait_for("children", lambda: cluster.clusters() == [name])
        cluster.add_pod(f"{name}-head", name, {"containerStatuses": [{"name": "ray-head", "state": {
            "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image ghcr.io/x"}}}]})
        cluster.add_pod(f"{name}-cpu-worker-1", name, {"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu."}]})
        cluster.add_pod("unrelated", "another-cluster", {"containerStatuses": [{"name": "x", "state": {
            "waiting": {"reason": "CrashLoopBackOff"}}}]})
        await wait_for("pod problem surfaced", lambda: condition(cluster.status(), "ClusterReady").get("reason")
                       == "PodProblem", state=cluster.status)
        await wait_for("Failed", lambda: cluster.status().get("phase") == "Failed", state=cluster.status)
        status = cluster.status()
        assert status["reason"] == "StartupDeadlineExceeded"
        assert "ImagePullBackOff" in status["message"] and "Unschedulable" in status["message"]
        assert "CrashLoopBackOff" not in status["message"]
        await wait_for_events(cluster, {"PodProblem", "StartupDeadlineExceeded"})
        assert rayjob(1) not in cluster.rayjobs()  # a pending RayJob is stopped with the job


async def test_active_deadline_stops_the_running_job(cluster, operator, progress):
    async with operator():
        created = await cluster.create_job(job_manifest(activeDeadlineSeconds=2))
        name, rayjob = child_names(created)
        await wait_for("attempt 1", lambda: cluster.rayjobs() == [rayjob(1)])
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(1), "RUNNING")
        await wait_for("Running", lambda: cluster.status().get("phase") == "Running", state=cluster.status)
        await wait_for("Failed", lambda: cluster.status().get("phase") == "Failed", state=cluster.status)
        assert cluster.status()["reason"] == "DeadlineExceeded"
        await wait_for("RayJob stopped", lambda: cluster.rayjobs() == [])
        assert cluster.clusters() == [name]
