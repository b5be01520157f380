"""Suspend and resume (with and without Kueue), both deadlines and the TTL, on the real control plane."""

from __future__ import annotations

import json
import time

import yaml

from e2e.support.waiting import wait_for

from .conftest import apply_job, children, condition, job_manifest, job_status, wait_phase
from .test_lifecycle import one, paced, ray_job_status


def pods(kubectl) -> list[dict]:
    return kubectl.json("get", "pods").get("items", [])


def test_suspend_stops_the_ray_job_and_the_cluster_then_resume_starts_a_new_attempt(kubectl, operator, ray,
                                                                                       media_dir, qdrant):
    apply_job(kubectl, job_manifest("pause", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(30)))
    wait_phase(kubectl, "pause", "Running", timeout=180)
    submission = one(kubectl, "rayjobs")["spec"]["jobId"]
    kubectl.run("patch", "xj", "pause", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    status = wait_phase(kubectl, "pause", "Suspended", timeout=60)
    assert condition(status, "Suspended")["status"] == "True"
    wait_for("the Ray job stopped", lambda: ray_job_status(ray, submission) in ("STOPPED", "FAILED"), 60)
    assert one(kubectl, "rayclusters")["spec"]["suspend"] is True
    wait_for("the cluster's pods gone (KubeRay)", lambda: not pods(kubectl), 60)

    time.sleep(3)  # suspension holds: nothing comes back by itself
    assert not pods(kubectl) and job_status(kubectl, "pause")["phase"] == "Suspended"

    kubectl.run("patch", "xj", "pause", "--type=merge", "-p", '{"spec": {"suspend": false}}')
    status = wait_phase(kubectl, "pause", "Running", timeout=180)
    assert status["attempt"] == 2, status
    assert one(kubectl, "rayclusters")["spec"]["suspend"] is False


def _kueue_queue(kubectl, name: str, cpu: str) -> None:
    docs = [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": f"{name}-flavor"}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": name},
         "spec": {"namespaceSelector": {}, "resourceGroups": [{
             "coveredResources": ["cpu", "memory"],
             "flavors": [{"name": f"{name}-flavor", "resources": [
                 {"name": "cpu", "nominalQuota": cpu}, {"name": "memory", "nominalQuota": "512Gi"}]}]}]}},
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": "batch", "namespace": kubectl.namespace}, "spec": {"clusterQueue": name}},
    ]
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def test_kueue_admits_the_cluster_and_the_job_runs(kubectl, operator, ray, media_dir, qdrant):
    _kueue_queue(kubectl, f"cq-{kubectl.namespace}", cpu="100")
    apply_job(kubectl, job_manifest("queued", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(0.1), labels={"kueue.x-k8s.io/queue-name": "batch"}))
    status = wait_phase(kubectl, "queued", {"Succeeded", "Failed"}, timeout=300)
    assert status["phase"] == "Succeeded", status
    cluster, rayjob = one(kubectl, "rayclusters"), one(kubectl, "rayjobs")
    assert cluster["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "batch"
    assert cluster["metadata"]["annotations"]["kueue.x-k8s.io/elastic-job"] == "true"
    assert not any(k.startswith("kueue.x-k8s.io/") for k in rayjob["metadata"].get("labels", {}))
    workloads = kubectl.json("get", "workloads.kueue.x-k8s.io").get("items", [])
    assert workloads and any(c["type"] == "Admitted" and c["status"] == "True"
                             for w in workloads for c in w["status"].get("conditions", [])), workloads


def test_kueue_without_quota_keeps_the_job_waiting_for_admission(kubectl, operator, ray, media_dir, qdrant):
    _kueue_queue(kubectl, f"cq-{kubectl.namespace}", cpu="1")  # less than the head and one worker need
    apply_job(kubectl, job_manifest("starved", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(0.1), labels={"kueue.x-k8s.io/queue-name": "batch"}))

    def waiting():
        s = job_status(kubectl, "starved")
        c = condition(s, "ClusterReady") or {}
        return c.get("reason") == "WaitingForAdmission" and s
    status = wait_for("WaitingForAdmission", waiting, 90)
    assert status["phase"] in ("Pending", "Provisioning"), status
    assert one(kubectl, "rayclusters")["spec"]["suspend"] is True
    assert not pods(kubectl)


def test_suspend_under_kueue_releases_the_cluster_and_it_stays_released(kubectl, operator, ray, media_dir, qdrant):
    """Kueue unsuspends an admitted RayCluster, so suspending one would bring its pods back; under
    Kueue a suspended job gives its cluster up instead."""
    _kueue_queue(kubectl, f"cq-{kubectl.namespace}", cpu="100")
    apply_job(kubectl, job_manifest("kpause", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(30), labels={"kueue.x-k8s.io/queue-name": "batch"}))
    wait_phase(kubectl, "kpause", "Running", timeout=240)
    kubectl.run("patch", "xj", "kpause", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    wait_phase(kubectl, "kpause", "Suspended", timeout=60)
    wait_for("the RayCluster released", lambda: not children(kubectl, "rayclusters"), 60)
    time.sleep(5)
    assert not children(kubectl, "rayclusters") and not pods(kubectl)
    kubectl.run("patch", "xj", "kpause", "--type=merge", "-p", '{"spec": {"suspend": false}}')
    status = wait_phase(kubectl, "kpause", "Running", timeout=240)
    assert status["attempt"] == 2


def test_startup_deadline_fails_a_job_whose_pods_cannot_be_scheduled(kubectl, operator):
    manifest = job_manifest("stuck", kubectl.namespace, startupDeadlineSeconds=20)
    manifest["spec"]["cluster"]["workerGroups"] = [
        {"name": "gpu", "gpus": 16, "cpu": "8", "memory": "32Gi", "minReplicas": 1, "maxReplicas": 1}]
    manifest["spec"]["extractors"][0]["resources"] = {"gpu": 1}
    apply_job(kubectl, manifest)

    def pod_problem():
        c = condition(job_status(kubectl, "stuck"), "ClusterReady") or {}
        return c.get("reason") == "PodProblem" and c
    problem = wait_for("a PodProblem condition", pod_problem, 60)
    assert "Unschedulable" in problem["message"] or "nvidia.com/gpu" in problem["message"], problem
    status = wait_phase(kubectl, "stuck", "Failed", timeout=60)
    assert status["reason"] == "StartupDeadlineExceeded", status


def test_active_deadline_fails_the_job_and_stops_its_ray_job(kubectl, operator, ray, media_dir, qdrant):
    apply_job(kubectl, job_manifest("slow", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(30), activeDeadlineSeconds=45))
    wait_phase(kubectl, "slow", "Running", timeout=180)
    submission = one(kubectl, "rayjobs")["spec"]["jobId"]
    status = wait_phase(kubectl, "slow", "Failed", timeout=90)
    assert status["reason"] == "DeadlineExceeded", status
    wait_for("the Ray job stopped", lambda: ray_job_status(ray, submission) in ("STOPPED", "FAILED"), 60)


def test_ttl_deletes_the_cluster_of_a_finished_job(kubectl, operator, ray, media_dir, qdrant):
    apply_job(kubectl, job_manifest("brief", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(0), ttlSecondsAfterFinished=2))
    wait_phase(kubectl, "brief", "Succeeded", timeout=240)
    wait_for("the RayCluster deleted after the TTL", lambda: not children(kubectl, "rayclusters"), 60)
    status = job_status(kubectl, "brief")
    assert condition(status, "ClusterReady")["reason"] == "ClusterDeleted", json.dumps(status)
    assert status["phase"] == "Succeeded"
