"""A SearchService on the real control plane: the real operator (as its ServiceAccount, so RBAC and
OwnerReferencesPermissionEnforcement apply) creates a RayService that the real API server admits
(KubeRay's own CRD, structural pruning) and KubeRay's real controller accepts: it makes the RayService's
RayCluster, labelled as a RayService's. No Serve application runs here (kwok's pods start no Ray), so
the service stays Deploying; its status, conditions and observedGeneration are the operator's. A spec
change patches the RayService; an ExtractionJob aimed at that RayCluster is refused; deleting the
SearchService deletes the RayService (the real garbage collector)."""

from __future__ import annotations

import json

import yaml

from e2e.support.waiting import wait_for
from prism_api.search_service import SHARED_WITH_SERVICE_ANNOTATION
from prism_operator.builders.rayservice import SEARCH_LABEL, SOURCE_GENERATION_ANNOTATION

from .conftest import apply_job, condition, events, job_manifest, wait_phase


def search_manifest(name: str, namespace: str, **spec: object) -> dict:
    body = {
        "collection": "docs",
        "qdrant": {"url": "http://127.0.0.1:1"},
        "deployments": [{"extractor": "text", "replicas": {"min": 1, "max": 2}, "resources": {"cpu": 1}}],
        "cluster": {"head": {"cpu": "1", "memory": "2Gi"},
                    "workerGroups": [{"name": "serve", "cpu": "2", "memory": "4Gi", "minReplicas": 1,
                                      "maxReplicas": 2}]},
        **spec,
    }
    return {"apiVersion": "prism.dev/v1alpha1", "kind": "SearchService",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def service_status(kubectl, name: str) -> dict:
    return (kubectl.get("searchservice", name) or {}).get("status") or {}


def describe(kubectl, name: str):
    return lambda: json.dumps({k: v for k, v in service_status(kubectl, name).items()
                               if k in ("phase", "reason", "message", "observedGeneration")})


def test_a_search_service_becomes_a_rayservice_that_kuberay_accepts(kubectl, operator):
    ns = kubectl.namespace
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(search_manifest("docs-search", ns)))
    service = kubectl.get("searchservice", "docs-search")

    rs = wait_for("the RayService", lambda: kubectl.get("rayservice", "docs-search"), 60,
                  describe=describe(kubectl, "docs-search"))
    owner = rs["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (
        "SearchService", service["metadata"]["uid"], True, True)
    assert rs["metadata"]["labels"][SEARCH_LABEL] == "docs-search"
    config = yaml.safe_load(rs["spec"]["serveConfigV2"])
    assert config["applications"][0]["args"]["collection"] == "docs"
    # Nothing of what the operator sent was pruned by the API server (KubeRay's v1.6.2 CRD).
    groups = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert groups[0]["groupName"] == "serve" and "batch" not in json.dumps(rs["spec"]["rayClusterConfig"])
    assert rs["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"

    # KubeRay accepts it: it makes the RayService's RayCluster (not a ValidationFailed condition).
    raycluster = wait_for("KubeRay's RayCluster for the RayService", lambda: next(iter(kubectl.list(
        "rayclusters", "ray.io/originated-from-crd=RayService,ray.io/originated-from-cr-name=docs-search")), None),
        120, describe=lambda: json.dumps((kubectl.get("rayservice", "docs-search") or {}).get("status")))
    assert raycluster["metadata"]["labels"][SEARCH_LABEL] == "docs-search"  # KubeRay copies the labels
    ready = condition((kubectl.get("rayservice", "docs-search") or {}).get("status") or {}, "Ready") or {}
    assert ready.get("reason") != "ValidationFailed", ready

    status = wait_for("Deploying", lambda: s if (s := service_status(kubectl, "docs-search")).get("phase")
                      == "Deploying" else None, 60, describe=describe(kubectl, "docs-search"))
    generation = kubectl.get("searchservice", "docs-search")["metadata"]["generation"]
    assert status["observedGeneration"] == generation
    assert status["rayService"] == "docs-search"
    assert status["endpoint"] == f"http://docs-search-serve-svc.{ns}.svc:8000"
    for kind, want in (("Ready", "False"), ("Progressing", "True"), ("Failed", "False")):
        cond = condition(status, kind)
        assert cond and cond["status"] == want and cond["observedGeneration"] == generation, (kind, cond)

    # A spec change patches the RayService (KubeRay then upgrades it).
    kubectl.merge_patch("searchservice", "docs-search", {"spec": {"deployments": [
        {"extractor": "text", "replicas": {"min": 2, "max": 3}, "resources": {"cpu": 1}}]}})
    patched = wait_for("the RayService patched", lambda: r if (r := kubectl.get("rayservice", "docs-search"))[
        "metadata"]["annotations"].get(SOURCE_GENERATION_ANNOTATION) == str(generation + 1) else None, 60)
    [dep] = yaml.safe_load(patched["spec"]["serveConfigV2"])["applications"][0]["deployments"]
    assert dep["autoscaling_config"]["min_replicas"] == 2
    wait_for("observedGeneration follows", lambda: service_status(kubectl, "docs-search").get(
        "observedGeneration") == generation + 1, 60, describe=describe(kubectl, "docs-search"))

    # A batch job on the RayService's cluster is refused unless it accepts that KubeRay replaces it.
    cluster_name = raycluster["metadata"]["name"]
    apply_job(kubectl, job_manifest("on-service", ns, cluster={"existing": cluster_name}))
    refused = wait_phase(kubectl, "on-service", {"Failed", "Running", "Provisioning"}, timeout=60)
    assert refused["phase"] == "Failed" and refused["reason"] == "InvalidSpec", refused
    assert "killing batch jobs" in refused["message"] and SHARED_WITH_SERVICE_ANNOTATION in refused["message"]
    assert kubectl.list("rayjobs") == []
    assert "InvalidSpec" in {e["reason"] for e in events(kubectl, "on-service")}

    # Deleting the SearchService deletes its RayService (owner reference, the real garbage collector).
    kubectl.run("delete", "searchservice", "docs-search", "--timeout=60s")
    wait_for("the RayService garbage-collected", lambda: kubectl.get("rayservice", "docs-search") is None, 120)
