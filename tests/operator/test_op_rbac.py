"""The ClusterRole grants exactly the API calls the operator makes: a whole job lifecycle (every code
path that calls the API) is recorded against the emulated API server and compared with the rules."""

from __future__ import annotations

from pathlib import Path

import yaml

from .conftest import (
    child_names,
    condition,
    job_manifest,
    play_cluster_ready,
    play_rayjob,
    progress_text,
    wait_for,
)

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
    rules = granted() - REAL_SERVER_ONLY - CRON_ONLY - DEBUG_ONLY
    assert calls - rules == set(), f"calls the ClusterRole does not allow: {sorted(calls - rules)}"
    assert rules - calls == set(), f"permissions the operator never uses: {sorted(rules - calls)}"
