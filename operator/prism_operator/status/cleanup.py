"""What happens after a job has finished (derive's terminal branch), in this order:

1. A job that ended with failures (Failed, or Succeeded with failed files) gets its failure ledger and
   the tail of its driver log saved in the ConfigMap `<job>-debug` (status.debug). Best effort and
   bounded: one try per reconcile for at most DEBUG_SAVE_TIMEOUT_SECONDS after the job finished, then
   status.debug says why nothing was saved. Whether the ConfigMap exists is an observation that derive
   asks for (Decision.wants_debug_config_map) only while the record is due.
2. Only once that is settled may the RayCluster go: a failed job's as spec.cleanup.onFailure says
   (keep it whole, or only its head, for ttlSeconds), any other's after ttlSecondsAfterFinished. A
   RayCluster named by spec.cluster.existing is never deleted nor scaled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from prism_api import ExtractionJobStatus, Phase
from prism_api.job_spec import KEEP_HEAD, KEEP_NONE, OnFailure
from prism_api.job_status import DebugRecord

from ..builders.debug_configmap import debug_config_map_name, debug_record, owned_by
from .clock import parse_time, rfc3339, seconds_since
from .conditions import Cond, find
from .model import Action, DeleteCluster, Event, Observed, SaveDebug, ScaleWorkersToZero, StopRayJob

CLUSTER_DELETED = "ClusterDeleted"
RAYJOB_DELETED = "RayJobDeleted"
KEPT_FOR_DEBUGGING = "KeptForDebugging"  # a failed job's RayCluster, kept until cleanup.onFailure.ttlSeconds
KEPT_UNTIL_DELETED = "KeptUntilJobDeleted"  # ... kept with no end: nothing is left to do
# ClusterReady reasons that say the cleanup of a finished job is done (its timer can stop).
CLEANED_UP = frozenset({CLUSTER_DELETED, RAYJOB_DELETED, KEPT_UNTIL_DELETED})
DEBUG_SAVED, DEBUG_NOT_SAVED = "DebugSaved", "DebugNotSaved"
# How long a finished job keeps trying to save its debug ConfigMap (the dashboard may be restarting);
# its RayCluster's deletion waits for that, so this bounds the wait too.
DEBUG_SAVE_TIMEOUT_SECONDS = 120


@dataclass
class AfterFinish:
    """What the terminal branch adds to the carried status."""
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    cluster_ready: Cond | None = None
    debug: DebugRecord | None = None
    wants_debug_config_map: bool = False


def wants_debug(status: ExtractionJobStatus) -> bool:
    """A finished job that ran (an attempt started) and ended with failures."""
    return (status.phase.is_terminal() and status.attempt >= 1
            and (status.phase == Phase.FAILED or status.failures.count > 0))


def after_finish(obs: Observed) -> AfterFinish:
    out = AfterFinish()
    settled = _debug(obs, out)
    policy = obs.job.spec.cleanup.on_failure
    if obs.old.phase == Phase.FAILED and policy.keep != KEEP_NONE and obs.owns_cluster:
        _keep(obs, out, policy, settled)
    elif settled:
        _ttl(obs, out)
    return out


def cleanup_pending(spec: dict, status: ExtractionJobStatus) -> bool:
    """Whether a finished job still has something due that a timer must bring (kopf's `when` for the
    timer: `spec` is the wire form): its debug record, or its RayCluster kept, scaled or deleted."""
    if status.reason == "InvalidSpec" and not status.ray_cluster:
        return False  # refused by the operator: it created nothing
    if wants_debug(status) and status.debug is None:
        return True
    cluster = find(status.conditions, "ClusterReady")
    if cluster is not None and cluster.reason in CLEANED_UP:
        return False
    keep = ((spec.get("cleanup") or {}).get("onFailure") or {}).get("keep") or KEEP_NONE
    if status.phase == Phase.FAILED and keep != KEEP_NONE and not (spec.get("cluster") or {}).get("existing"):
        return True
    return spec.get("ttlSecondsAfterFinished") is not None


# --- 1. the debug record -------------------------------------------------------------------------

def _debug(obs: Observed, out: AfterFinish) -> bool:
    """Whether the debug record is settled (saved, given up, or not wanted)."""
    old = obs.old
    if old.debug is not None or not wants_debug(old):
        return True
    if not obs.debug_read:
        out.wants_debug_config_map = True
        return False
    name = debug_config_map_name(obs.job)
    if owned_by(obs.debug_config_map, obs.job):
        out.debug = debug_record(obs.debug_config_map)
        out.events.append(Event(
            "Normal", DEBUG_SAVED,
            f"failure ledger ({out.debug.failed_files} failed files) and driver log tail saved in ConfigMap {name}: "
            f"kubectl get configmap {name} -o jsonpath='{{.data.failures\\.jsonl}}'"))
        return True
    why = _why_not_saved(obs)
    if why:
        out.debug = DebugRecord(message=f"nothing saved: {why}"[:1024])
        out.events.append(Event("Warning", DEBUG_NOT_SAVED,
                                f"the failure ledger and driver log of this job were not saved: {why}"))
        return True
    out.actions.append(SaveDebug(obs.submission_id, name))
    return False


def _why_not_saved(obs: Observed) -> str:
    """Why no further try can save the record ("" while one may)."""
    failure = obs.debug_save_failure
    if not obs.submission_id:
        return "the job has no Ray job to read a driver log from"
    if obs.cluster is None:
        return f"RayCluster {obs.cluster_name} is gone: no Ray dashboard to read the driver log from"
    if _state(obs.cluster) == "suspended":
        return f"RayCluster {obs.cluster_name} is suspended: no Ray dashboard to read the driver log from"
    if failure is not None and failure.final:
        return failure.error
    age = seconds_since(obs.old.completion_time, obs.now)
    if age is not None and age >= DEBUG_SAVE_TIMEOUT_SECONDS:
        return (f"not saved within {DEBUG_SAVE_TIMEOUT_SECONDS}s of the job's end"
                + (f": {failure.error}" if failure else ""))
    return ""


# --- 2. the RayCluster ---------------------------------------------------------------------------

def _ttl(obs: Observed, out: AfterFinish) -> None:
    """ttlSecondsAfterFinished: the owned RayCluster goes; on a shared one, only the RayJob."""
    ttl = obs.job.spec.ttl_seconds_after_finished
    age = seconds_since(obs.old.completion_time, obs.now)
    if ttl is None or age is None or age < ttl:
        return
    if obs.owns_cluster:
        _delete_cluster(obs, out, f"ttlSecondsAfterFinished={ttl} after the job finished",
                        f"deleted {ttl}s after the job finished (ttlSecondsAfterFinished)")
        return
    if obs.rayjob is not None:
        out.actions.append(StopRayJob(obs.rayjob_name))
    # Not ours to delete: say only that it is no longer watched.
    out.cluster_ready = Cond("Unknown", RAYJOB_DELETED,
                             f"RayJob deleted {ttl}s after the job finished (ttlSecondsAfterFinished); "
                             f"the shared RayCluster {obs.cluster_name} stays")


def _delete_cluster(obs: Observed, out: AfterFinish, when: str, condition: str) -> None:
    """The owned RayCluster goes now (if it is still there), and ClusterReady says when and why."""
    if obs.cluster is not None:
        out.actions.append(DeleteCluster(obs.cluster_name))
        out.events.append(Event("Normal", CLUSTER_DELETED, f"RayCluster {obs.cluster_name} deleted {when}"))
    out.cluster_ready = Cond("False", CLUSTER_DELETED, condition)


def _keep(obs: Observed, out: AfterFinish, policy: OnFailure, settled: bool) -> None:
    """cleanup.onFailure keeps a failed job's RayCluster (whole, or its head with the workers scaled to
    zero) until ttlSeconds after the job failed, instead of ttlSecondsAfterFinished."""
    name, ttl, cluster = obs.cluster_name, policy.ttl_seconds, obs.cluster
    age = seconds_since(obs.old.completion_time, obs.now)
    if ttl is not None and age is not None and age >= ttl and settled:
        _delete_cluster(obs, out, f"cleanup.onFailure.ttlSeconds={ttl} after the job failed (kept for "
                        "debugging until then)", f"deleted {ttl}s after the job failed (cleanup.onFailure.ttlSeconds)")
        return
    if cluster is None:
        out.cluster_ready = Cond("False", CLUSTER_DELETED,
                                 f"RayCluster {name} is gone (kept for debugging by cleanup.onFailure, then "
                                 "deleted by someone else)")
        return
    head_only = policy.keep == KEEP_HEAD
    at_zero = workers_at_zero(cluster)
    if head_only and not at_zero and not (cluster.get("metadata") or {}).get("deletionTimestamp"):
        out.actions.append(ScaleWorkersToZero(name, worker_groups(cluster)))
    finished = parse_time(obs.old.completion_time)
    until = ("until the ExtractionJob is deleted" if ttl is None else
             f"until {rfc3339(finished + timedelta(seconds=ttl))} (cleanup.onFailure.ttlSeconds={ttl})"
             if finished else f"for {ttl}s (cleanup.onFailure.ttlSeconds)")
    what = "its head stays (workers scaled to zero)" if head_only else "it stays whole"
    message = f"RayCluster {name} kept for debugging (cleanup.onFailure.keep={policy.keep}): {what} {until}"
    done = ttl is None and settled and (at_zero or not head_only)
    out.cluster_ready = Cond("True" if _state(cluster) == "ready" else "False",
                             KEPT_UNTIL_DELETED if done else KEPT_FOR_DEBUGGING, message)
    before = find(obs.old.conditions, "ClusterReady")
    if before is None or before.reason not in (KEPT_FOR_DEBUGGING, KEPT_UNTIL_DELETED):
        out.events.append(Event("Normal", KEPT_FOR_DEBUGGING, message))


def worker_groups(cluster: dict) -> tuple[str, ...]:
    return tuple(g.get("groupName", "") for g in (cluster.get("spec") or {}).get("workerGroupSpecs") or [])


def workers_at_zero(cluster: dict) -> bool:
    groups = (cluster.get("spec") or {}).get("workerGroupSpecs") or []
    return all(not g.get("replicas") and not g.get("minReplicas") for g in groups)


def _state(cluster: dict) -> str:
    return (cluster.get("status") or {}).get("state", "")
