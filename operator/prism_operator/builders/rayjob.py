"""The RayJob of one attempt: runs `python -m prism_pipeline run` on the job's RayCluster.

The entrypoint carries the job document as base64url(zlib(JSON)) (prism_api.entrypoint):
no shell pass between the RayJob and the driver acts on it, and large specs stay under Linux's
limit on one argument.

Every attempt is a new RayJob on the same cluster (`clusterSelector`), so KubeRay's own retries and
cleanup are off (`backoffLimit: 0`, `shutdownAfterJobFinishes: false`): with clusterSelector KubeRay
does neither, and the ExtractionJob operator owns both.
"""

from __future__ import annotations

from prism_api import ExtractionJob, ray_job_name
from prism_api.conventions import ATTEMPT_LABEL, JOB_LABEL
from prism_api.entrypoint import Entrypoint, EntrypointError, encode_document, job_document

from .labels import child_metadata
from .raycluster import RAY_API_VERSION, cluster_name_for, owned_cluster_name

# HTTPMode: the KubeRay controller submits the Ray job through the head's dashboard itself, with the
# RayJob's jobId as the submission id, and resubmits on its next reconcile if the job is not there
# (a head restarted without GCS fault tolerance): no submitter pod per attempt (K8sJobMode's is 500m
# CPU with no placement, lives the whole job, and cannot be scheduled on GPU-only tainted pools), no
# submitter retries running out (SubmissionFailed), no synthetic FAILED 30 s after a submitter exits,
# and no command line to outgrow. SidecarMode does not support clusterSelector.
SUBMISSION_MODE = "HTTPMode"


def build_entrypoint(job: ExtractionJob, attempt: int) -> str:
    """`python -m prism_pipeline run --job <base64url(zlib(JSON))> --attempt N --progress-port P`.

    Raises EntrypointError when the document is too large for one argument: the reconciler checks
    that (entrypoint_error) before it creates any child, and fails the job as InvalidSpec.
    """
    return Entrypoint.for_job(job, attempt).command()


def entrypoint_error(job: ExtractionJob) -> str:
    """Why no RayJob of this job can carry its document ("" when one can)."""
    try:
        encode_document(job_document(job))
    except EntrypointError as exc:
        return str(exc)
    return ""


def rayjob_name_for(job: ExtractionJob, attempt: int) -> str:
    """Named after the job's own cluster name even on `cluster.existing`: unique per job, not per cluster."""
    return ray_job_name(owned_cluster_name(job), attempt)


def submission_id(rayjob: dict | None, name: str) -> str:
    """The Ray submission id of an attempt: KubeRay's status.jobId when it has set one, else the
    spec.jobId this operator chose (the RayJob's name)."""
    rayjob = rayjob or {}
    return ((rayjob.get("status") or {}).get("jobId") or (rayjob.get("spec") or {}).get("jobId") or name)


def build_ray_job(job: ExtractionJob, attempt: int) -> dict:
    cluster = cluster_name_for(job)
    name = rayjob_name_for(job, attempt)
    return {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayJob",
        "metadata": child_metadata(job, name, "ray-job", {ATTEMPT_LABEL: str(attempt)}),
        "spec": {
            "entrypoint": build_entrypoint(job, attempt),
            "clusterSelector": {"ray.io/cluster": cluster},
            # The Ray submission id: a resubmission of the same attempt never starts a second run.
            "jobId": name,
            "submissionMode": SUBMISSION_MODE,
            "backoffLimit": 0,
            "shutdownAfterJobFinishes": False,
            "metadata": {JOB_LABEL: job.metadata.name, ATTEMPT_LABEL: str(attempt)},
        },
    }
