"""The children served from kopf's watches (child_index.py): an idle job costs no API request, a
child's change reaches the status without a read, and a child the watch has not shown yet is known
from its create (no second create, no "missing child")."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp

from prism_operator import child_index
from prism_operator.child_index import ChildIndexes, ChildLedger, slim_cluster, slim_pod, slim_ray_job
from prism_operator.k8s_api import RAYCLUSTERS, RAYJOBS
from prism_operator.reconcile import JobMemory, Reconciler

from .conftest import (
    NAMESPACE,
    child_names,
    condition,
    job_manifest,
    operator_config,
    play_cluster_ready,
    play_rayjob,
    progress_text,
    wait_for,
)


def api_calls(cluster) -> list[str]:
    """Every API request but the long-lived watches: what an idle job must not cause."""
    return [f"{r.method} {r.url.path}" for r in cluster.requests()
            if r.params.get("watch") not in ("true", "1") and r.url.path.startswith("/api")]


async def test_an_idle_job_makes_no_api_request_and_a_childs_change_needs_no_read(cluster, operator, progress):
    async with operator() as op:
        created = await cluster.create_job(job_manifest())
        name, rayjob = child_names(created)
        await wait_for("children", lambda: cluster.clusters() == [name] and cluster.rayjobs() == [rayjob(1)])
        service = f"{NAMESPACE}/{name}-head-svc"
        progress.texts[service] = progress_text(total=10, done=5, items={"text": 50})
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(1), "RUNNING")
        await wait_for("Running", lambda: cluster.status().get("phase") == "Running"
                       and cluster.status().get("progress", {}).get("filesDone") == 5, state=cluster.status)

        # Idle: children exist, nothing changes. Several timer ticks (0.25 s) read progress from the head
        # and nothing from the API server.
        await asyncio.sleep(0.5)  # a tick under way finishes
        before, reads = len(api_calls(cluster)), progress.hits[service]
        await wait_for("eight ticks", lambda: progress.hits[service] >= reads + 8)
        assert api_calls(cluster)[before:] == []

        # A child changes: the watch brings it; the status follows with no GET of the child.
        play_rayjob(cluster, rayjob(1), "SUCCEEDED", deployment="Complete")
        await wait_for("Succeeded", lambda: cluster.status().get("phase") == "Succeeded", state=cluster.status)
        gets = [c for c in api_calls(cluster)[before:] if c.startswith("GET") and "/ray.io/" in c]
        assert gets == [], gets
        assert op.runtime.reconciler is not None


async def test_pod_problems_come_from_the_watched_pods(cluster, operator, progress):
    async with operator():
        created = await cluster.create_job(job_manifest())
        name, _ = child_names(created)
        await wait_for("cluster", lambda: cluster.clusters() == [name])
        cluster.add_pod(f"{name}-head", name, {"containerStatuses": [{"name": "ray-head", "state": {
            "waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}]})
        await wait_for("ClusterReady names the pod", lambda: "ImagePullBackOff" in condition(
            cluster.status(), "ClusterReady").get("message", ""), state=cluster.status)
        pod_lists = [c for c in api_calls(cluster) if c.startswith("GET") and c.endswith("/pods")]
        assert pod_lists == []


class CreatingApi:
    """The API server answering creates (with the stored object) and counting every request; the
    watch never catches up in these tests (the indexes stay empty unless a test fills them)."""

    def __init__(self):
        self.stored: dict[tuple[str, str], dict] = {}
        self.creates: list[str] = []
        self.gets: list[str] = []

    async def create_child(self, obj):
        key = (obj["kind"], obj["metadata"]["name"])
        self.creates.append(obj["kind"])
        if key in self.stored:
            return None
        self.stored[key] = {**obj, "metadata": {**obj["metadata"], "uid": f"uid-{len(self.stored)}",
                                                "resourceVersion": "1"}}
        return self.stored[key]

    async def get_ray_cluster(self, namespace, name):
        self.gets.append(f"RayCluster {name}")
        return self.stored.get(("RayCluster", name))

    async def get_ray_job(self, namespace, name):
        self.gets.append(f"RayJob {name}")
        return self.stored.get(("RayJob", name))

    async def list_cluster_pods(self, namespace, name):
        raise AssertionError("pods are read from the index")

    def post_event(self, body, type_, reason, message):
        pass


def job_body() -> dict:
    body = job_manifest()
    body["metadata"].update(uid="u1", generation=1)
    return body


EMPTY = ChildIndexes({}, {}, {})


async def test_create_then_index_lag_neither_creates_again_nor_calls_the_child_missing(progress):
    api, memory, body = CreatingApi(), JobMemory(), job_body()
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    async with aiohttp.ClientSession() as session:
        reconciler = Reconciler(api, session, operator_config(progress))
        first = await reconciler.reconcile(body, {}, memory, now=now, indexes=EMPTY)
        assert api.creates == ["RayCluster", "RayJob"] and api.gets == []
        body["status"] = first.status.to_wire()
        statuses = []
        for tick in range(1, 6):  # five ticks with the watch still behind: the creates' answers stand
            outcome = await reconciler.reconcile(body, {}, memory, now=now + timedelta(seconds=tick), indexes=EMPTY)
            statuses.append((outcome.status.phase, outcome.status.reason))
            assert outcome.errors == []
        assert api.creates == ["RayCluster", "RayJob"] and api.gets == []
        # The created cluster counts as there (provisioning), never as missing again (ClusterCreating).
        assert first.status.reason == "ClusterCreating"
        assert set(statuses) == {(first.status.phase, "ClusterProvisioning")}, statuses
        # The watch catches up with KubeRay's status: the index wins over the create's answer.
        name, rayjob = child_names(body)
        cluster = slim_cluster(api.stored["RayCluster", name])
        cluster["status"] = {"state": "ready", "head": {"serviceName": f"{name}-head-svc"}}
        job = slim_ray_job(api.stored["RayJob", rayjob(1)])
        job["status"] = {"jobStatus": "RUNNING", "jobDeploymentStatus": "Running"}
        caught_up = ChildIndexes({(NAMESPACE, name): [cluster]}, {(NAMESPACE, rayjob(1)): [job]}, {})
        outcome = await reconciler.reconcile(body, {}, memory, now=now + timedelta(seconds=9), indexes=caught_up)
        assert (outcome.status.phase.value, outcome.status.reason) == ("Running", "Running")
        assert memory.children.known == {} and api.gets == [] and len(api.creates) == 2


async def test_a_child_the_status_says_exists_but_the_index_lacks_is_read_once(progress):
    """After a restart (no memory) with an index that lacks a child: one GET per child, then none."""
    api, body = CreatingApi(), job_body()
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    async with aiohttp.ClientSession() as session:
        reconciler = Reconciler(api, session, operator_config(progress))
        first = await reconciler.reconcile(body, {}, JobMemory(), now=now, indexes=EMPTY)
        body["status"] = first.status.to_wire()
        memory = JobMemory()  # a new operator process
        for tick in range(1, 6):
            await reconciler.reconcile(body, {}, memory, now=now + timedelta(seconds=tick), indexes=EMPTY)
        name, rayjob = child_names(body)
        assert api.gets == [f"RayCluster {name}", f"RayJob {rayjob(1)}"]
        assert api.creates == ["RayCluster", "RayJob"] and memory.children.fallback_reads == 2


async def test_the_ledger_trusts_an_answer_for_the_grace_then_reads_again():
    ledger, reads = ChildLedger(), []

    async def read():
        reads.append(1)
        return None

    ledger.created(RAYCLUSTERS, {"metadata": {"name": "c"}}, now=0.0)
    assert await ledger.child(RAYCLUSTERS, "c", None, True, read, now=1.0) == {"metadata": {"name": "c"}}
    assert reads == []
    grace = child_index.INDEX_GRACE_SECONDS
    assert await ledger.child(RAYCLUSTERS, "c", None, True, read, now=grace + 1) is None and reads == [1]
    # Gone, as the API said: trusted until the watch shows it again, with no further read.
    assert await ledger.child(RAYCLUSTERS, "c", None, True, read, now=10 * grace) is None and reads == [1]
    seen = {"metadata": {"name": "c"}, "status": {"state": "ready"}}
    assert await ledger.child(RAYCLUSTERS, "c", seen, True, read, now=10 * grace) is seen
    assert ledger.known == {}
    # Not expected (no attempt yet): no read at all.
    assert await ledger.child(RAYJOBS, "j", None, False, read, now=0.0) is None and reads == [1]


def test_slim_children_keep_what_the_reconciler_reads():
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
               "metadata": {"name": "c", "namespace": "ns", "uid": "u", "labels": {"a": "b"},
                            "managedFields": [{"big": "x" * 1000}], "deletionTimestamp": "t"},
               "spec": {"suspend": True, "headGroupSpec": {"template": {"spec": {}}},
                        "workerGroupSpecs": [{"groupName": "cpu", "replicas": 2, "minReplicas": 1,
                                              "template": {"spec": {"containers": []}}}]},
               "status": {"state": "ready", "head": {"serviceName": "c-head-svc"}}}
    assert slim_cluster(cluster) == {
        "metadata": {"name": "c", "namespace": "ns", "uid": "u", "labels": {"a": "b"}, "deletionTimestamp": "t"},
        "spec": {"suspend": True, "workerGroupSpecs": [{"groupName": "cpu", "replicas": 2, "minReplicas": 1}]},
        "status": {"state": "ready", "head": {"serviceName": "c-head-svc"}}}
    rayjob = {"metadata": {"name": "j"}, "spec": {"jobId": "s", "entrypoint": "x" * 1000},
              "status": {"jobStatus": "RUNNING"}}
    assert slim_ray_job(rayjob) == {"metadata": {"name": "j"}, "spec": {"jobId": "s"},
                                    "status": {"jobStatus": "RUNNING"}}
    pod = {"metadata": {"name": "p", "labels": {}}, "spec": {"containers": []}, "status": {
        "conditions": [{"type": "Ready", "status": "False"},
                       {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "m"}],
        "containerStatuses": [{"name": "a", "state": {"running": {}}},
                              {"name": "b", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "x"}}}]}}
    assert slim_pod(pod) == {"metadata": {"name": "p"}, "status": {
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "m"}],
        "initContainerStatuses": [],
        "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff", "message": "x"}}}]}}
