"""A failed job's debug record and kept cluster through the real kopf runtime (emulated API server, a
real HTTP server playing the Ray dashboard): the driver log read and saved in `<job>-debug`, the
workers scaled to zero, the RayCluster kept past ttlSecondsAfterFinished until
cleanup.onFailure.ttlSeconds; a dashboard that never answers delays the TTL only for a bounded time.
The ConfigMap calls are the ones the ClusterRole grants (test_op_rbac leaves them to this file)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import aiohttp
import kmock
import pytest

from prism_api.failed_file import FailedFile
from prism_api.outcome import Outcome
from prism_operator import operator_metrics as metrics
from prism_operator.k8s_api import KubeApiError
from prism_operator.reconcile import Reconciler
from prism_operator.status import cleanup

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
    wait_for_events,
)
from .test_op_rbac import granted, recorded

BROKEN = ("file:///media/broken-0.pdf", "file:///media/broken-1.pdf")
DRIVER_LOG = "".join([
    "2026-11-22 11:58:01,000 INFO worker.py:1 -- Connecting to existing Ray cluster\n",
    *(FailedFile(uri, "decode", "not a PDF").to_line() + "\n" for uri in BROKEN),
    "prism: job campaign failed: 2 of 3 files failed\n",
])


@pytest.fixture
async def cluster(cluster):
    """The conftest's emulated API server, serving ConfigMaps too."""
    cluster.emulator.resources["v1/configmaps"] = kmock.ResourceInfo(
        kind="ConfigMap", verbs={"list", "watch", "get", "patch", "create", "delete"}, namespaced=True)
    return cluster


def config_map(cluster, name: str = "campaign-debug") -> dict | None:
    return cluster.get("v1", "configmaps", name)


async def forget(cluster) -> None:
    """Delete the job while the operator runs: its finalizer drops the job's metrics."""
    await cluster.delete_job("campaign")
    await wait_for("job gone", lambda: cluster.job() is None)


async def fail_with_broken_files(cluster, progress, **spec) -> tuple[str, str]:
    """A job whose only attempt fails with too many failed files; returns (RayCluster, submission)."""
    manifest = job_manifest(retries={"limit": 0}, **spec)
    manifest["metadata"].pop("labels")  # not in Kueue
    created = await cluster.create_job(manifest)
    name, rayjob = child_names(created)
    await wait_for("attempt 1", lambda: cluster.rayjobs() == [rayjob(1)])
    play_cluster_ready(cluster, name)
    progress.texts[f"{NAMESPACE}/{name}-head-svc"] = progress_text(
        total=3, done=1, failed=2, samples=[(uri, "decode", "not a PDF") for uri in BROKEN],
        outcome=Outcome.TOO_MANY_FAILED_FILES.value, finished=True)
    progress.ray_jobs[rayjob(1)] = "FAILED"
    play_rayjob(cluster, rayjob(1), "FAILED", deployment="Complete", message="exit code 1")
    return name, rayjob(1)


async def test_a_failed_job_keeps_its_head_and_saves_its_failures(cluster, operator, progress):
    keep = {"onFailure": {"keep": "Head", "ttlSeconds": 2}}
    async with operator():
        name, submission = await fail_with_broken_files(cluster, progress, ttlSecondsAfterFinished=0, cleanup=keep)
        progress.logs[submission] = DRIVER_LOG
        status = await wait_for("the debug record", lambda: (cluster.status().get("debug") or {}).get("configMap"),
                                state=cluster.status)
        assert status == "campaign-debug"
        workers = await wait_for("workers scaled to zero", lambda: [
            (g["replicas"], g["minReplicas"]) for g in (cluster.get("ray.io/v1", "rayclusters", name) or {}).get(
                "spec", {}).get("workerGroupSpecs", [])] == [(0, 0)], state=cluster.status)
        assert workers
        # ttlSecondsAfterFinished (0) is long past, the cluster still there: kept for debugging.
        st = cluster.status()
        assert st["phase"] == "Failed" and condition(st, "ClusterReady")["reason"] == "KeptForDebugging"
        assert name in cluster.clusters()
        saved = config_map(cluster)
        assert [json.loads(line)["uri"] for line in saved["data"]["failures.jsonl"].splitlines()] == list(BROKEN)
        assert saved["data"]["driver-log-tail.txt"] == DRIVER_LOG
        assert saved["metadata"]["ownerReferences"][0]["name"] == "campaign"
        assert st["debug"]["failedFiles"] == 2
        await wait_for("deleted after cleanup.onFailure.ttlSeconds", lambda: cluster.clusters() == [],
                       state=cluster.status)
        await wait_for_events(cluster, {"DebugSaved", "KeptForDebugging", "ClusterDeleted"})
        assert config_map(cluster) is not None  # the record outlives the RayCluster
        await forget(cluster)

    calls = recorded(cluster.requests())
    assert calls - granted() == set(), f"calls the ClusterRole does not allow: {sorted(calls - granted())}"
    config_maps = {c for c in granted() if c[1] == "configmaps"}
    assert {c for c in calls if c[1] == "configmaps"} == config_maps, "the ClusterRole's ConfigMap verbs, exactly"


async def test_an_unreachable_dashboard_holds_the_ttl_only_for_a_while(cluster, operator, progress, monkeypatch):
    monkeypatch.setattr(cleanup, "DEBUG_SAVE_TIMEOUT_SECONDS", 2)
    progress.logs_down = True
    async with operator():
        name, submission = await fail_with_broken_files(cluster, progress, ttlSecondsAfterFinished=0)
        progress.logs[submission] = DRIVER_LOG
        debug = await wait_for("the record of what could not be saved", lambda: cluster.status().get("debug"),
                               state=cluster.status)
        assert "configMap" not in debug and "HTTP 503" in debug["message"], debug
        await wait_for("the TTL, once given up", lambda: cluster.clusters() == [], state=cluster.status)
        await wait_for_events(cluster, {"DebugNotSaved", "ClusterDeleted"})
        assert config_map(cluster) is None
        await forget(cluster)


class RefusingApi:
    """The API as a ClusterRole without the ConfigMap rule answers: everything else works."""

    def __init__(self, cluster: dict):
        self.cluster, self.deleted, self.events = cluster, [], []

    async def get_ray_cluster(self, namespace, name):
        return self.cluster

    async def get_ray_job(self, namespace, name):
        return {"status": {"jobStatus": "FAILED", "jobDeploymentStatus": "Complete"}}

    async def list_cluster_pods(self, namespace, name):
        return []

    async def get_config_map(self, namespace, name):
        raise KubeApiError("get configmaps: HTTP 403 Forbidden: configmaps is forbidden")

    async def create_config_map(self, obj):
        raise KubeApiError("create configmaps: HTTP 403 Forbidden: configmaps is forbidden")

    async def delete_ray_cluster(self, namespace, name):
        self.deleted.append(name)
        return True

    def post_event(self, body, type_, reason, message):
        self.events.append(reason)


@pytest.mark.parametrize("ended_seconds_ago", [10, cleanup.DEBUG_SAVE_TIMEOUT_SECONDS])
async def test_a_refused_config_map_is_a_failed_save_that_the_deadline_bounds(progress, ended_seconds_ago):
    """No ConfigMap rule in the ClusterRole: errors for kopf to retry, then, past the save's deadline,
    the record says why and the TTL goes ahead."""
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    ended = (now - timedelta(seconds=ended_seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = job_manifest(ttlSecondsAfterFinished=0)
    body["metadata"].update(uid="u1", generation=1)
    body["status"] = {"phase": "Failed", "reason": "TooManyFailedFiles", "attempt": 1, "completionTime": ended}
    name, rayjob = child_names(body)
    progress.logs[rayjob(1)] = DRIVER_LOG
    api = RefusingApi({"metadata": {"name": name}, "spec": {}, "status": {"state": "ready"}})
    async with aiohttp.ClientSession() as session:
        try:
            outcome = await Reconciler(api, session, operator_config(progress)).reconcile(body, {}, now=now)
        finally:
            metrics.forget_job(NAMESPACE, "campaign")  # the job gauges are process-wide
    assert any("403" in e for e in outcome.errors), outcome.errors
    if ended_seconds_ago < cleanup.DEBUG_SAVE_TIMEOUT_SECONDS:
        assert outcome.status.debug is None and api.deleted == []  # tried again next time
    else:
        assert "403" in outcome.status.debug.message and api.deleted == [name]
        assert "DebugNotSaved" in api.events
