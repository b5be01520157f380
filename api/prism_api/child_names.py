"""Deterministic names of the children of an ExtractionJob.

KubeRay derives pod and service names from RayCluster/RayJob names and rejects names longer than
47 characters; RayJob names must also be DNS-1035 labels. The RayCluster is `<job>-<hash5>`, and
attempt N runs as the RayJob `<job>-<hash5>-a<N>`; the hash keeps a recreated job (new uid) from
colliding with the children of a deleted one that are still being garbage-collected.
"""

from __future__ import annotations

import hashlib

KUBERAY_NAME_LIMIT = 47
MAX_ATTEMPT_DIGITS = 2  # retries.limit <= 20 plus resumes: attempts stay below 100
MAX_ATTEMPT = 10**MAX_ATTEMPT_DIGITS - 1
_HASH_LEN = 5
# <name>-<hash5>-a<NN>
MAX_JOB_NAME_LENGTH = KUBERAY_NAME_LIMIT - (1 + _HASH_LEN) - (2 + MAX_ATTEMPT_DIGITS)


def _short_hash(namespace: str, name: str, uid: str) -> str:
    return hashlib.sha256(f"{namespace}/{name}/{uid}".encode()).hexdigest()[:_HASH_LEN]


def ray_cluster_name(namespace: str, name: str, uid: str) -> str:
    return f"{name}-{_short_hash(namespace, name, uid)}"


def ray_job_name(cluster_name: str, attempt: int) -> str:
    if not 1 <= attempt < 10**MAX_ATTEMPT_DIGITS:
        raise ValueError(f"attempt must be between 1 and {10**MAX_ATTEMPT_DIGITS - 1} (got {attempt})")
    return f"{cluster_name}-a{attempt}"
