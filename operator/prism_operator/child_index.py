"""The children of every ExtractionJob as kopf's watches deliver them, so that a reconcile of an idle
job makes no API request.

kopf keeps three indexes current from its watches (handlers.py): RayClusters by (namespace, name),
Prism's RayJobs by (namespace, name), and the Pods of Prism's RayClusters by (namespace, cluster).
kopf fills them from its initial listing before any handler runs; afterwards they are eventually
consistent: a child this process has just created may not be in them yet. So:

- A child the operator created is known from the create's response (`ChildLedger.created`) until the
  index shows it, for at most `INDEX_GRACE_SECONDS`: a reconcile right after a create neither
  creates it again nor decides it is missing.
- A child the index lacks although the job's status says it was made (an attempt started) is read
  with one GET, and that answer is trusted in place of the index: a present one for
  `INDEX_GRACE_SECONDS` (then read again, if the index still lacks it), an absent one until the index
  shows it (a later creation reaches the watch). An idle job therefore reads nothing from the API.

Entries hold only the fields the reconciler reads (`slim_*`): 10,000 jobs' children stay small.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

INDEX_GRACE_SECONDS = 60.0
_META_KEYS = ("name", "namespace", "uid", "labels", "resourceVersion", "generation", "deletionTimestamp")
_WAITING_KEYS = ("reason", "message")


def _meta(body: Mapping) -> dict:
    meta = body.get("metadata") or {}
    return {k: (dict(meta[k]) if k == "labels" else meta[k]) for k in _META_KEYS if meta.get(k) is not None}


def slim_cluster(body: Mapping) -> dict:
    """A RayCluster as the reconciler reads it: labels, suspend, the worker groups' sizes, the status."""
    spec = body.get("spec") or {}
    groups = [{k: g[k] for k in ("groupName", "replicas", "minReplicas") if k in g}
              for g in spec.get("workerGroupSpecs") or []]
    kept_spec: dict[str, Any] = {"workerGroupSpecs": groups}
    if "suspend" in spec:
        kept_spec["suspend"] = spec["suspend"]
    return {"metadata": _meta(body), "spec": kept_spec, "status": _plain(body.get("status") or {})}


def slim_ray_job(body: Mapping) -> dict:
    """A RayJob as the reconciler reads it: its submission id and its status."""
    spec = body.get("spec") or {}
    return {"metadata": _meta(body), "spec": {k: spec[k] for k in ("jobId",) if k in spec},
            "status": _plain(body.get("status") or {})}


def slim_pod(body: Mapping) -> dict:
    """A Pod as status/pods.py reads it: an unschedulable condition and the waiting containers."""
    status = body.get("status") or {}
    kept: dict[str, Any] = {"conditions": [dict(c) for c in status.get("conditions") or []
                                           if c.get("type") == "PodScheduled" and c.get("status") == "False"]}
    for key in ("initContainerStatuses", "containerStatuses"):
        waiting = [((cs.get("state") or {}).get("waiting") or {}) for cs in status.get(key) or []]
        kept[key] = [{"state": {"waiting": {k: w[k] for k in _WAITING_KEYS if k in w}}} for w in waiting if w]
    return {"metadata": {"name": (body.get("metadata") or {}).get("name", "")}, "status": kept}


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts and lists (kopf hands bodies over as read-only views)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def first(values: Iterable[dict] | None) -> dict | None:
    for value in values or ():
        return value
    return None


@dataclass(frozen=True)
class ChildIndexes:
    """kopf's indexes (kopf.Index: key -> store of values), as the handlers receive them."""

    clusters: Mapping[tuple[str, str], Iterable[dict]]
    ray_jobs: Mapping[tuple[str, str], Iterable[dict]]
    pods: Mapping[tuple[str, str], Iterable[dict]]

    def cluster(self, namespace: str, name: str) -> dict | None:
        return first(self.clusters.get((namespace, name)))

    def ray_job(self, namespace: str, name: str) -> dict | None:
        return first(self.ray_jobs.get((namespace, name)))

    def cluster_pods(self, namespace: str, cluster: str) -> list[dict]:
        return list(self.pods.get((namespace, cluster)) or ())


@dataclass
class _Known:
    body: dict | None  # None: the API said it does not exist
    at: float


@dataclass
class ChildLedger:
    """One job's children as this process last learnt them from the API itself (a create's response,
    a fallback GET), for the time the watch has not shown them yet. Kept in the job's JobMemory."""

    known: dict[tuple[str, str], _Known] = field(default_factory=dict)
    fallback_reads: int = 0  # GETs made because the index lacked a child (tests and metrics read it)

    def created(self, kind: str, body: dict, now: float | None = None) -> None:
        self.known[kind, body["metadata"]["name"]] = _Known(body, time.monotonic() if now is None else now)

    async def child(self, kind: str, name: str, indexed: dict | None, expected: bool,
                    read: Callable[[], Awaitable[dict | None]], now: float | None = None) -> dict | None:
        """The child `name` of `kind`: the index's entry when it has one; else what the API told this
        process (`created`, a GET) while that holds; else, if the job's status says it exists
        (`expected`), one GET (`read`) whose answer is kept; else None (not made yet)."""
        key = (kind, name)
        if indexed is not None:
            self.known.pop(key, None)  # the watch has caught up
            return indexed
        now = time.monotonic() if now is None else now
        known = self.known.get(key)
        if known is not None and (known.body is None or now - known.at < INDEX_GRACE_SECONDS):
            return known.body
        if not expected:
            return None
        self.fallback_reads += 1
        body = await read()
        self.known[key] = _Known(body, now)
        return body
