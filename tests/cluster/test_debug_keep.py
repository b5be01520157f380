"""A failed job's cluster and failure ledger kept for debugging, on the real control plane: the real
operator (as its ServiceAccount: RBAC for the ConfigMap and the RayCluster patch), the real pipeline
failing on broken PDFs, the driver log read from the real Ray head's dashboard, the real KubeRay CRD
validating the scale-down, the real garbage collector removing the record with its job."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from e2e.support.waiting import wait_for

from .conftest import apply_job, children, condition, events, job_manifest, job_status, wait_phase
from .test_lifecycle import one, paced

BROKEN = {"broken-0.pdf", "broken-1.pdf"}
TTL_AFTER_FINISHED = 1
KEEP_SECONDS = 30


def lossy_media(root):
    media = root / "media"
    media.mkdir()
    for i in range(2):
        (media / f"ok-{i}.txt").write_text(f"good text {i}\n")
    for name in sorted(BROKEN):
        (media / name).write_bytes(b"%PDF-1.4 this is not a pdf at all" * 4)
    return media


def lossy_job(kubectl, name: str, media, qdrant, cleanup: dict) -> dict:
    return job_manifest(name, kubectl.namespace, media=media, qdrant_url=qdrant.url, extractors=paced(0),
                        failurePolicy={"maxFailedFileRatio": 0.2}, ttlSecondsAfterFinished=TTL_AFTER_FINISHED,
                        cleanup=cleanup)


def seconds(rfc3339: str) -> float:
    return datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def test_a_failed_job_keeps_its_cluster_past_the_ttl_and_leaves_its_failures(kubectl, operator, ray, qdrant,
                                                                            tmp_path):
    media = lossy_media(tmp_path)
    apply_job(kubectl, lossy_job(kubectl, "lossy", media, qdrant,
                                 {"onFailure": {"keep": "Cluster", "ttlSeconds": KEEP_SECONDS}}))
    status = wait_phase(kubectl, "lossy", "Failed", timeout=240)
    assert status["reason"] == "TooManyFailedFiles", status
    cluster_name = one(kubectl, "rayclusters")["metadata"]["name"]

    # The record: saved before any deletion, referenced from status, announced by an Event.
    debug = wait_for("status.debug", lambda: job_status(kubectl, "lossy").get("debug"), 90, interval=1.0,
                     describe=lambda: json.dumps(job_status(kubectl, "lossy").get("conditions")))
    assert debug.get("configMap") == "lossy-debug" and debug["failedFiles"] == 2, debug
    saved = kubectl.get("configmap", "lossy-debug")
    failures = [json.loads(line) for line in saved["data"]["failures.jsonl"].splitlines()]
    assert {f["uri"].rsplit("/", 1)[-1] for f in failures} == BROKEN, failures
    assert all(f["stage"] and f["error"] for f in failures), failures
    tail = saved["data"]["driver-log-tail.txt"]
    assert "PRISM_FAILURE" in tail and "lossy" in tail, tail[-2000:]
    owner = saved["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("ExtractionJob", "lossy")
    assert saved["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "prism-operator"

    # Kept past ttlSecondsAfterFinished: a few reconciles (1 s apart) after it fell due, still there.
    completed = seconds(status["completionTime"])
    time.sleep(max(0.0, completed + TTL_AFTER_FINISHED + 5 - time.time()))
    assert [c["metadata"]["name"] for c in children(kubectl, "rayclusters")] == [cluster_name]
    kept = condition(job_status(kubectl, "lossy"), "ClusterReady")
    assert kept["reason"] == "KeptForDebugging" and "cleanup.onFailure.ttlSeconds=30" in kept["message"], kept

    # Then deleted after cleanup.onFailure.ttlSeconds, and not before.
    wait_for("the RayCluster deleted after cleanup.onFailure.ttlSeconds", lambda: not children(kubectl, "rayclusters"),
             KEEP_SECONDS + 90, interval=1.0)
    final = job_status(kubectl, "lossy")
    deleted = condition(final, "ClusterReady")
    assert deleted["reason"] == "ClusterDeleted" and "cleanup.onFailure.ttlSeconds" in deleted["message"], deleted
    assert seconds(deleted["lastTransitionTime"]) >= completed + KEEP_SECONDS, (deleted, status["completionTime"])
    assert final["phase"] == "Failed" and final["debug"] == debug
    reasons = [e["reason"] for e in events(kubectl, "lossy")]
    assert {"DebugSaved", "KeptForDebugging", "ClusterDeleted"} <= set(reasons), reasons
    assert kubectl.get("configmap", "lossy-debug") is not None  # the record outlives the cluster

    # It goes with the job (owner reference, real garbage collector).
    kubectl.run("delete", "xj", "lossy", "--timeout=90s")
    wait_for("the debug ConfigMap garbage-collected", lambda: kubectl.get("configmap", "lossy-debug") is None, 90)


def test_keep_head_scales_the_workers_to_zero_on_the_real_kuberay_crd(kubectl, operator, ray, qdrant, tmp_path):
    media = lossy_media(tmp_path)
    apply_job(kubectl, lossy_job(kubectl, "headonly", media, qdrant, {"onFailure": {"keep": "Head"}}))
    wait_phase(kubectl, "headonly", "Failed", timeout=240)

    def scaled() -> list[dict] | None:
        groups = one(kubectl, "rayclusters")["spec"]["workerGroupSpecs"]
        return groups if all(g.get("replicas") == 0 and g.get("minReplicas") == 0 for g in groups) else None

    def kept_for_good() -> dict | None:
        status = job_status(kubectl, "headonly")
        return status if (condition(status, "ClusterReady") or {}).get("reason") == "KeptUntilJobDeleted" else None

    groups = wait_for("workers scaled to zero", scaled, 90, interval=1.0)
    assert [g["groupName"] for g in groups] == ["cpu"] and groups[0]["maxReplicas"] == 2
    status = wait_for("kept with no end", kept_for_good, 90, interval=1.0)
    assert status["debug"]["configMap"] == "headonly-debug", status["debug"]
    assert "until the ExtractionJob is deleted" in condition(status, "ClusterReady")["message"]
