"""Labels and owner references shared by every child of an ExtractionJob."""

from __future__ import annotations

from prism_pipeline.spec import API_VERSION, KIND, ExtractionJob

JOB_LABEL = "prism.dev/extraction-job"
ATTEMPT_LABEL = "prism.dev/attempt"
MANAGED_BY = "prism-operator"

# Labels of the ExtractionJob that queueing systems read on the RayCluster (Kueue ignores RayJobs
# that use clusterSelector, so the cluster is where they must be).
COPIED_LABEL_PREFIXES = ("kueue.x-k8s.io/",)


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


def child_metadata(job: ExtractionJob, name: str, component: str, extra_labels: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if job.metadata.namespace:
        meta["namespace"] = job.metadata.namespace
    meta["labels"] = {**copied_labels(job), **child_labels(job, component), **(extra_labels or {})}
    if job.metadata.uid:
        meta["ownerReferences"] = [owner_reference(job)]
    return meta
