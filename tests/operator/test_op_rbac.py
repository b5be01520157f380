"""The ClusterRole grants exactly the API calls the operator makes: a whole job lifecycle (every code
path that calls the API) is recorded against the emulated API server and compared with the rules."""

from __future__ import annotations

from pathlib import Path

import yaml

from .conftest import (
    NAMESPACE,
    child_names,
    condition,
    job_manifest,
    play_cluster_ready,
    play_rayjob,
    progress_text,
    wait_for,
)
from .kube_emulator import PRISM, RAY

CLUSTERROLE = Path(__file__).resolve().parents[2] / "manifests" / "rbac" / "clusterrole.yaml"
VERBS = {"list": "list", "watch": "watch", "fetch": "get", "create": "create", "update": "patch",
         "delete": "delete"}
# What only a real API server asks for, so the emulator never records it (tests/cluster checks these):
# kopf lists and watches CRDs where apiextensions is served, and OwnerReferencesPermissionEnforcement
# checks `update` on the owner's finalizers when a child sets blockOwnerDeletion (no call is made).
REAL_SERVER_ONLY = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("prism.dev", "extractionjobs/finalizers", "update"),
}
# What only an ExtractionCronJob needs: tests/cluster/test_cron.py runs the real operator as this
# ServiceAccount through a schedule's runs and history and fails on any error line in its log.
CRON_ONLY = {
    ("prism.dev", "extractionjobs", "create"),
    ("prism.dev", "extractionjobs", "delete"),
    ("prism.dev", "extractioncronjobs", "list"),
    ("prism.dev", "extractioncronjobs", "watch"),
    ("prism.dev", "extractioncronjobs", "patch"),
    ("prism.dev", "extractioncronjobs/status", "patch"),
    ("prism.dev", "extractioncronjobs/finalizers", "update"),
}

# What only a SearchService needs (kopf lists and watches SearchServices and RayServices from the start,
# so those calls are made in a job's lifecycle too): test_search_service_calls_are_granted below.
SEARCH_ONLY = {
    ("prism.dev", "searchservices", "patch"),
    ("prism.dev", "searchservices/status", "patch"),
    ("prism.dev", "searchservices/finalizers", "update"),
    ("ray.io", "rayservices", "create"),
    ("ray.io", "rayservices", "patch"),
}

# Of those, what only a real API server asks for (as for extractionjobs/finalizers above).
REAL_SERVER_ONLY_SEARCH = {("prism.dev", "searchservices/finalizers", "update")}

# What only a job that ends with failed files needs (its <job>-debug ConfigMap): test_op_debug.py runs
# such a job and checks these calls against the same ClusterRole.
DEBUG_ONLY = {("", "configmaps", "get"), ("", "configmaps", "create")}


def granted() -> set[tuple[str, str, str]]:
    role = yaml.safe_load(CLUSTERROLE.read_text())
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def recorded(requests) -> set[tuple[str, str, str]]:
    calls = set()
    for r in requests:
        if r.headers.get("User-Agent", "").startswith("kmock"):
            continue  # the test itself (playing the user and KubeRay)
        if r.resource is None or not r.resource.plural or r.action is None:
            continue  # discovery (/api, /apis/...): open to every authenticated client
        resource = r.resource.plural + (f"/{r.subresource}" if r.subresource else "")
        calls.add((r.resource.group, resource, VERBS[r.action.value.lower()]))
    return calls


async def test_clusterrole_covers_exactly_the_calls_made(cluster, operator, progress):
    async with operator():
        manifest = job_manifest(retries={"limit": 1}, ttlSecondsAfterFinished=0)
        manifest["metadata"].pop("labels")  # not in Kueue: suspend patches the RayCluster (Kueue: deletes it)
        created = await cluster.create_job(manifest)
        name, rayjob = child_names(created)
        await wait_for("attempt 1", lambda: cluster.rayjobs() == [rayjob(1)])
        cluster.add_pod(f"{name}-head", name, {"containerStatuses": [{"state": {"waiting": {
            "reason": "ErrImagePull", "message": "no such image"}}}]})
        await wait_for("pods listed", lambda: condition(cluster.status(), "ClusterReady").get("reason")
                       == "PodProblem", state=cluster.status)
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(1), "RUNNING")
        progress.texts[f"media/{name}-head-svc"] = progress_text(total=2, done=1)
        await wait_for("Running", lambda: cluster.status().get("phase") == "Running", state=cluster.status)

        await cluster.patch_job("campaign", {"spec": {"suspend": True}})
        await wait_for("Suspended", lambda: cluster.status().get("phase") == "Suspended" and not cluster.rayjobs(),
                       state=cluster.status)
        await cluster.patch_job("campaign", {"spec": {"suspend": False}})
        await wait_for("attempt 2", lambda: cluster.rayjobs() == [rayjob(2)])
        play_cluster_ready(cluster, name)
        play_rayjob(cluster, rayjob(2), "FAILED", deployment="Complete", message="boom")
        await wait_for("attempt 3", lambda: rayjob(3) in cluster.rayjobs(), state=cluster.status)
        play_rayjob(cluster, rayjob(3), "SUCCEEDED", deployment="Complete")
        await wait_for("TTL cleanup", lambda: cluster.clusters() == [], state=cluster.status)

        await cluster.delete_job("campaign")
        await wait_for("job gone", lambda: cluster.job() is None)
        assert rayjob(3) not in cluster.rayjobs()  # the finalizer deleted the last attempt's RayJob

    calls = recorded(cluster.requests())
    rules = granted() - REAL_SERVER_ONLY - CRON_ONLY - SEARCH_ONLY - DEBUG_ONLY
    assert calls - rules == set(), f"calls the ClusterRole does not allow: {sorted(calls - rules)}"
    assert rules - calls == set(), f"permissions the operator never uses: {sorted(rules - calls)}"


SEARCH_SERVICE = {
    "apiVersion": "prism.dev/v1alpha1", "kind": "SearchService",
    "metadata": {"name": "docs", "namespace": NAMESPACE},
    "spec": {"collection": "campaign", "qdrant": {"url": "http://qdrant.qdrant:6333",
                                                   "apiKeySecretRef": {"name": "qdrant", "key": "api-key"}}},
}


async def test_search_service_calls_are_granted(cluster, operator):
    """A SearchService's lifecycle (created, its spec changed, deleted) makes only granted calls, and
    makes every call SEARCH_ONLY grants (but the finalizers' update, which no call makes)."""
    path = cluster._path(PRISM, "searchservices")
    async with operator(search_interval=0.25):
        async with cluster.server.client.post(path, json=SEARCH_SERVICE) as r:
            assert r.status < 300, await r.text()

        def rayservice() -> dict:
            return cluster.get(RAY, "rayservices", cluster.names(RAY, "rayservices")[0])

        def service() -> dict:
            return cluster.get(PRISM, "searchservices", "docs") or {}

        await wait_for("RayService created", lambda: cluster.names(RAY, "rayservices"), state=service)
        await wait_for("status written", lambda: (service().get("status") or {}).get("phase"), state=service)
        async with cluster.server.client.patch(
                f"{path}/docs", json={"spec": {"deployments": [{"extractor": "text", "replicas": {"max": 3}}]}},
                headers={"Content-Type": "application/merge-patch+json"}) as r:
            assert r.status < 300, await r.text()
        await wait_for("RayService patched", lambda: "max_replicas: 3" in rayservice()["spec"]["serveConfigV2"],
                       state=service)
        async with cluster.server.client.delete(f"{path}/docs") as r:
            assert r.status < 300, await r.text()
        await wait_for("SearchService gone", lambda: cluster.get(PRISM, "searchservices", "docs") is None,
                       state=service)

    calls = recorded(cluster.requests())
    assert calls - granted() == set(), f"calls the ClusterRole does not allow: {sorted(calls - granted())}"
    unused = SEARCH_ONLY - REAL_SERVER_ONLY_SEARCH - calls
    assert unused == set(), f"permissions a SearchService never uses: {sorted(unused)}"
