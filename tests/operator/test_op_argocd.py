"""The ArgoCD health checks for ExtractionJob, ExtractionCronJob and SearchService, run in a real Lua
runtime (lupa), and the ArgoCD examples."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

lupa = pytest.importorskip("lupa", reason="lupa (a Lua runtime from PyPI) runs the ArgoCD health check")

ARGOCD = Path(__file__).resolve().parents[2] / "manifests" / "argocd"
SCRIPT = (ARGOCD / "health-extractionjob.lua").read_text()
CRON_SCRIPT = (ARGOCD / "health-extractioncronjob.lua").read_text()
SEARCH_SCRIPT = (ARGOCD / "health-searchservice.lua").read_text()


def health(obj: dict, script: str = SCRIPT) -> dict:
    """Run the script as ArgoCD does: a chunk with the object as the global `obj`, returning `hs`."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return dict(result)


def job(status: dict | None, generation: int = 2) -> dict:
    obj = {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionJob",
           "metadata": {"name": "j", "generation": generation}, "spec": {}}
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize("status,expected,message", [
    (None, "Progressing", "Waiting for the Prism operator"),
    ({"phase": "Succeeded", "observedGeneration": 2, "reason": "Succeeded", "message": "attempt 1 succeeded"},
     "Healthy", "Succeeded: Succeeded: attempt 1 succeeded"),
    ({"phase": "Failed", "observedGeneration": 2, "reason": "RetriesExhausted", "message": "OOM"},
     "Degraded", "Failed: RetriesExhausted: OOM"),
    ({"phase": "Suspended", "observedGeneration": 2, "reason": "Suspended"}, "Suspended", "Suspended"),
    ({"phase": "Running", "observedGeneration": 2, "reason": "Running", "message": "attempt 1 running",
      "progress": {"summary": "640/1000", "percent": 64}},
     "Progressing", "Running: Running: attempt 1 running (640/1000 files, 64%)"),
    ({"phase": "Provisioning", "observedGeneration": 2, "reason": "PodProblem",
      "message": "pod x: ImagePullBackOff"}, "Progressing", "ImagePullBackOff"),
    # A status written for an older spec says nothing about the new one, even if it looks final.
    ({"phase": "Succeeded", "observedGeneration": 1}, "Progressing", "observe generation 2"),
    ({"phase": "Failed"}, "Progressing", "observe generation 2"),
])
def test_health(status, expected, message):
    hs = health(job(status))
    assert hs["status"] == expected
    assert message in hs["message"]


def test_configmap_patch_carries_the_same_script():
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["data"]["resource.customizations.health.prism.dev_ExtractionJob"] == SCRIPT
    assert patch["data"]["resource.customizations.health.prism.dev_ExtractionCronJob"] == CRON_SCRIPT
    assert patch["data"]["resource.customizations.health.prism.dev_SearchService"] == SEARCH_SCRIPT
    assert len(patch["data"]) == 3


@pytest.mark.parametrize("status,expected,message", [
    (None, "Progressing", "Waiting for the Prism operator"),
    ({"reason": "Scheduled", "observedGeneration": 2, "nextScheduleTime": "2026-12-03T01:30:00Z",
      "lastJob": "nightly-29936250"}, "Healthy", "Scheduled: next run 2026-12-03T01:30:00Z, last nightly-29936250"),
    ({"reason": "Waiting", "observedGeneration": 2, "nextScheduleTime": "2026-12-03T01:30:00Z",
      "message": "the run for 2026-12-02T01:30:00Z waits"}, "Healthy", "; the run for 2026-12-02T01:30:00Z waits"),
    ({"reason": "Suspended", "observedGeneration": 2, "message": "spec.suspend is true: no new runs"},
     "Suspended", "no new runs"),
    ({"reason": "InvalidSpec", "observedGeneration": 2, "message": "spec.schedule: must have five fields"},
     "Degraded", "InvalidSpec: spec.schedule"),
    ({"reason": "ApiError", "observedGeneration": 2, "message": "create extractionjobs: HTTP 500"},
     "Progressing", "HTTP 500"),
    ({"reason": "Scheduled", "observedGeneration": 1}, "Progressing", "observe generation 2"),
])
def test_cron_health(status, expected, message):
    obj = {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionCronJob",
           "metadata": {"name": "nightly", "generation": 2}, "spec": {"schedule": "30 2 * * *"}}
    if status is not None:
        obj["status"] = status
    hs = health(obj, CRON_SCRIPT)
    assert hs["status"] == expected and message in hs["message"], hs


@pytest.mark.parametrize("status,expected,message", [
    (None, "Progressing", "Waiting for the Prism operator"),
    ({"phase": "Pending", "observedGeneration": 2, "reason": "Creating", "message": "creating RayService docs"},
     "Progressing", "Pending: Creating: creating RayService docs"),
    ({"phase": "Deploying", "observedGeneration": 2, "reason": "Deploying",
      "message": "KubeRay is starting the cluster"}, "Progressing", "Deploying: Deploying: KubeRay is starting"),
    ({"phase": "Ready", "observedGeneration": 2, "reason": "Serving", "message": "2 models",
      "endpoint": "http://docs-serve-svc.media.svc:8000", "readyReplicas": 3},
     "Healthy", "Ready: Serving: 2 models (http://docs-serve-svc.media.svc:8000, 3 replicas)"),
    ({"phase": "Ready", "observedGeneration": 2}, "Healthy", "Ready:  (0 replicas)"),
    ({"phase": "Failed", "observedGeneration": 2, "reason": "DeployFailed",
      "message": "text: the collection was written by version abc, this replica loaded def"},
     "Degraded", "Failed: DeployFailed: text: the collection was written by version abc"),
    ({"phase": "Failed", "observedGeneration": 2, "reason": "InvalidSpec", "message": "spec.collection: ..."},
     "Degraded", "InvalidSpec"),
    # A Ready (or Failed) status written for an older spec says nothing about the new one: the change
    # is being rolled out.
    ({"phase": "Ready", "observedGeneration": 1, "readyReplicas": 2}, "Progressing", "observe generation 2"),
    ({"phase": "Failed", "observedGeneration": 1}, "Progressing", "observe generation 2"),
    ({"phase": "Ready"}, "Progressing", "observe generation 2"),
])
def test_search_service_health(status, expected, message):
    obj = {"apiVersion": "prism.dev/v1alpha1", "kind": "SearchService",
           "metadata": {"name": "docs", "generation": 2},
           "spec": {"collection": "docs", "qdrant": {"url": "http://qdrant.media.svc:6333"}}}
    if status is not None:
        obj["status"] = status
    hs = health(obj, SEARCH_SCRIPT)
    assert hs["status"] == expected and message in hs["message"], hs


def test_search_service_health_knows_every_phase():
    """Every phase the contract defines gets a deliberate verdict (an unknown one would be Progressing)."""
    from prism_api.search_service import ServicePhase

    verdicts = {}
    for phase in ServicePhase:
        obj = {"metadata": {"name": "docs", "generation": 1},
               "status": {"phase": phase.value, "observedGeneration": 1}}
        verdicts[phase.value] = health(obj, SEARCH_SCRIPT)["status"]
    assert verdicts == {"Pending": "Progressing", "Deploying": "Progressing", "Ready": "Healthy",
                        "Failed": "Degraded"}


def test_applications_ignore_autoscaled_replicas():
    apps = {a["metadata"]["name"]: a for a in yaml.safe_load_all((ARGOCD / "application.yaml").read_text())}
    assert apps["prism-operator"]["spec"]["source"]["path"] == "manifests"
    ignored = apps["prism-jobs"]["spec"]["ignoreDifferences"]
    assert {"group": "ray.io", "kind": "RayCluster",
            "jqPathExpressions": [".spec.workerGroupSpecs[].replicas"]} in ignored
    for app in apps.values():
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
