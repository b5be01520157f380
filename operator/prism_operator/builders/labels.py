"""Labels and owner references shared by every child of an ExtractionJob."""

from __future__ import annotations

from prism_api import API_VERSION, KIND, ExtractionJob
from prism_api.conventions import JOB_LABEL, MANAGED_BY

# Labels of the ExtractionJob that Kueue reads, copied onto the owned RayCluster only. Never onto a
# RayJob: Kueue's webhook suspends a queue-labelled RayJob and then ignores it (clusterSelector), so
# nothing ever unsuspends it, and KubeRay fails a suspended clusterSelector RayJob (ValidationFailed).
COPIED_LABEL_PREFIXES = ("kueue.x-k8s.io/",)
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Kueue refuses a queue-labelled RayCluster with in-tree autoscaling unless it carries this.
KUEUE_ELASTIC_JOB_ANNOTATION = "kueue.x-k8s.io/elastic-job"


def child_labels(job: ExtractionJob, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "prism",
        "app.kubernetes.io/instance": job.metadata.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "prism",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        JOB_LABEL: job.metadata.name,
    }


def copied_labels(job: ExtractionJob) -> dict[str, str]:
    return {k: v for k, v in job.metadata.labels.items() if k.startswith(COPIED_LABEL_PREFIXES)}


def owner_reference(job: ExtractionJob) -> dict:
    """The ExtractionJob as controller owner: Kubernetes GC removes the child with the job."""
    if not job.metadata.uid:
        raise ValueError(f"ExtractionJob {job.metadata.name} has no metadata.uid; owner references need one")
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": job.metadata.name,
        "uid": job.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def kueue_queue(job: ExtractionJob) -> str:
    """The Kueue LocalQueue the job's RayCluster is queued in ("" when Kueue is not used)."""
    return job.metadata.labels.get(KUEUE_QUEUE_LABEL, "")


def child_metadata(job: ExtractionJob, name: str, component: str, extra_labels: dict | None = None,
                   queue_labels: bool = False) -> dict:
    """`queue_labels`: copy the job's `kueue.x-k8s.io/*` labels (the RayCluster only)."""
    meta: dict = {"name": name}
    if job.metadata.namespace:
        meta["namespace"] = job.metadata.namespace
    copied = copied_labels(job) if queue_labels else {}
    meta["labels"] = {**copied, **child_labels(job, component), **(extra_labels or {})}
    if job.metadata.uid:
        meta["ownerReferences"] = [owner_reference(job)]
    return meta
