"""The RayJob of one attempt: runs `python -m prism_pipeline run` on the job's RayCluster.

Every attempt is a new RayJob on the same cluster (`clusterSelector`), so KubeRay's own retries and
cleanup are off (`backoffLimit: 0`, `shutdownAfterJobFinishes: false`): with clusterSelector KubeRay
does neither, and the ExtractionJob operator owns both.
"""

from __future__ import annotations

import json
import re
import shlex

from prism_pipeline.spec import API_VERSION, KIND, ExtractionJob, ray_job_name
from prism_pipeline.spec.metrics import PROGRESS_PORT

from .labels import ATTEMPT_LABEL, child_metadata
from .raycluster import RAY_API_VERSION, cluster_name_for, owned_cluster_name

# K8sJobMode: `ray job submit` runs in a separate Kubernetes Job that KubeRay retries with the same
# submission id, so a head restart (with GCS fault tolerance) re-attaches instead of losing the
# submission; SidecarMode dies with the head pod and HTTPMode has no retrying submitter.
SUBMISSION_MODE = "K8sJobMode"
SUBMITTER_BACKOFF_LIMIT = 2


def pipeline_document(job: ExtractionJob) -> dict:
    """What the entrypoint receives: the job's identity and its spec in wire form."""
    m = job.metadata
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": m.name, "namespace": m.namespace, "uid": m.uid},
        "spec": job.spec.to_wire(),
    }


# Characters a shell would act on inside JSON strings, and JSON's own backslash escapes: written as
# \uXXXX escapes, which every JSON parser reads back and no shell touches.
_SHELL_ACTIVE = re.compile(r'\\\\|\\"|[$`\'!]')


def shell_safe_json(document: dict) -> str:
    """JSON that survives every shell pass between the RayJob and the driver.

    In K8sJobMode the entrypoint is pasted into the submitter's `bash -c` command, `ray job submit`
    joins its arguments again with subprocess.list2cmdline, and Ray's job supervisor runs that
    string with `/bin/sh`. The text below has spaces (so list2cmdline wraps it in double quotes) and
    no `\\`, `\\"`, `$`, backtick, quote or `!` inside strings, so each pass gives it back unchanged.
    """
    text = json.dumps(document, sort_keys=True, ensure_ascii=True, separators=(", ", ": "))
    return _SHELL_ACTIVE.sub(lambda m: {"\\\\": "\\u005c", '\\"': "\\u0022"}.get(m.group(0))
                             or f"\\u{ord(m.group(0)):04x}", text)


def build_entrypoint(job: ExtractionJob) -> str:
    document = shell_safe_json(pipeline_document(job))
    return f"python -m prism_pipeline run --spec {shlex.quote(document)} --progress-port {PROGRESS_PORT}"


def rayjob_name_for(job: ExtractionJob, attempt: int) -> str:
    """Named after the job's own cluster name even on `cluster.existing`: unique per job, not per cluster."""
    return ray_job_name(owned_cluster_name(job), attempt)


def build_ray_job(job: ExtractionJob, attempt: int) -> dict:
    cluster = cluster_name_for(job)
    name = rayjob_name_for(job, attempt)
    return {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayJob",
        "metadata": child_metadata(job, name, "ray-job", {ATTEMPT_LABEL: str(attempt)}),
        "spec": {
            "entrypoint": build_entrypoint(job),
            "clusterSelector": {"ray.io/cluster": cluster},
            # The Ray submission id: a resubmission of the same attempt never starts a second run.
            "jobId": name,
            "submissionMode": SUBMISSION_MODE,
            "submitterConfig": {"backoffLimit": SUBMITTER_BACKOFF_LIMIT},
            "backoffLimit": 0,
            "shutdownAfterJobFinishes": False,
            "metadata": {"prism.dev/extraction-job": job.metadata.name, "prism.dev/attempt": str(attempt)},
        },
    }
