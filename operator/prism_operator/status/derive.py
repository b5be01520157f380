"""The one pure function that decides an ExtractionJob's next status and the actions to reach it.

Input: what the operator observed (the job, its old status, the RayCluster, the current attempt's
RayJob, stuck pods, a progress reading, the time). Output: the full new status plus the actions
(create, stop, suspend, delete) and the Events to post. Phases (see prism_pipeline.spec.status):

    Pending -> Provisioning -> Running -> Succeeded | Failed ; any live phase <-> Suspended

A failed attempt with retries left starts the next RayJob on the same cluster (condition Retrying);
terminal phases are sticky, and only ttlSecondsAfterFinished acts on a finished job.
Deadlines follow Kubernetes Jobs: the clock starts at startTime, which a resume resets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prism_pipeline.spec import ExtractionJobStatus, Phase

from ..builders.rayjob import rayjob_name_for
from .clock import rfc3339, seconds_since
from .conditions import Cond, find, merge_conditions, phase_conditions
from .model import (
    Action,
    CreateCluster,
    CreateRayJob,
    Decision,
    DeleteCluster,
    Event,
    Observed,
    StopRayJob,
    SuspendCluster,
)
from .progress import failures_from, progress_from, too_many_failed_files, usage_from

FINISHED_JOB_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
FAILED_DEPLOYMENTS = frozenset({"Failed", "ValidationFailed"})
CLUSTER_DELETED = "ClusterDeleted"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
RAYJOB_DELETED = "RayJobDeleted"
# ClusterReady reasons that say the TTL cleanup is done (the timer can stop).
CLEANED_UP = frozenset({CLUSTER_DELETED, RAYJOB_DELETED})


@dataclass
class _Draft:
    """The new status under construction; turned into the model once, at the end."""
    phase: Phase
    reason: str
    message: str = ""
    attempt: int = 0
    failed_attempts: int = 0
    start_time: str | None = None
    completion_time: str | None = None
    cluster_ready: Cond | None = None
    retrying: Cond | None = None
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def cluster_state(cluster: dict | None) -> str:
    return ((cluster or {}).get("status") or {}).get("state", "") if cluster else ""


def kueue_queue(obs: Observed) -> str:
    """The Kueue LocalQueue the job's RayCluster is queued in ("" when Kueue is not used)."""
    return obs.job.metadata.labels.get(KUEUE_QUEUE_LABEL, "") if obs.job else ""


def _rayjob_status(rayjob: dict | None) -> tuple[str, str, str]:
    status = (rayjob or {}).get("status") or {}
    message = status.get("message") or status.get("reason") or ""
    return status.get("jobStatus", "") or "", status.get("jobDeploymentStatus", "") or "", message


def derive(obs: Observed) -> Decision:
    old = obs.old
    if obs.job is None:
        draft = _invalid(obs)
    elif old.phase.is_terminal():
        draft = _finished(obs)
    else:
        draft = _live(obs)
    return _finish(obs, draft)


def _invalid(obs: Observed) -> _Draft:
    old = obs.old
    if old.phase.is_terminal() and old.reason != "InvalidSpec":
        return _carry(old)
    message = "; ".join(obs.spec_errors)[:4096]
    return _Draft(Phase.FAILED, "InvalidSpec", message, attempt=old.attempt, failed_attempts=old.failed_attempts,
                  start_time=old.start_time, completion_time=old.completion_time or rfc3339(obs.now))


def _carry(old: ExtractionJobStatus) -> _Draft:
    return _Draft(old.phase, old.reason, old.message, attempt=old.attempt, failed_attempts=old.failed_attempts,
                  start_time=old.start_time, completion_time=old.completion_time)


def _finished(obs: Observed) -> _Draft:
    """Terminal: keep the outcome; stop a RayJob still running; apply ttlSecondsAfterFinished."""
    draft = _carry(obs.old)
    job_status, _, _ = _rayjob_status(obs.rayjob)
    if obs.rayjob is not None and job_status not in FINISHED_JOB_STATUSES:
        draft.actions.append(StopRayJob(obs.rayjob_name))
    ttl = obs.job.spec.ttl_seconds_after_finished
    age = seconds_since(obs.old.completion_time, obs.now)
    if ttl is None or age is None or age < ttl:
        return draft
    if obs.owns_cluster:
        if obs.cluster is not None:
            draft.actions.append(DeleteCluster(obs.cluster_name))
            draft.events.append(Event("Normal", CLUSTER_DELETED,
                                      f"RayCluster {obs.cluster_name} deleted ttlSecondsAfterFinished={ttl} "
                                      "after the job finished"))
        draft.cluster_ready = Cond("False", CLUSTER_DELETED,
                                   f"deleted {ttl}s after the job finished (ttlSecondsAfterFinished)")
    else:
        if obs.rayjob is not None:
            draft.actions.append(StopRayJob(obs.rayjob_name))
        # Not ours to delete: say only that it is no longer watched.
        draft.cluster_ready = Cond("Unknown", RAYJOB_DELETED,
                                   f"RayJob deleted {ttl}s after the job finished (ttlSecondsAfterFinished); "
                                   f"the shared RayCluster {obs.cluster_name} stays")
    return draft


def _cluster_condition(obs: Observed) -> Cond:
    state = cluster_state(obs.cluster)
    if obs.cluster is None:
        if obs.owns_cluster:
            return Cond("False", "ClusterCreating", f"creating RayCluster {obs.cluster_name}")
        return Cond("False", "ClusterNotFound",
                    f"RayCluster {obs.cluster_name} (spec.cluster.existing) not found in this namespace")
    if state == "ready":
        return Cond("True", "ClusterReady", f"RayCluster {obs.cluster_name} is ready")
    if state == "suspended" or (obs.cluster.get("spec") or {}).get("suspend"):
        queue = kueue_queue(obs)
        if queue and not obs.job.spec.suspend:
            return Cond("False", "WaitingForAdmission",
                        f"RayCluster {obs.cluster_name} is queued in Kueue LocalQueue {queue!r}")
        return Cond("False", "ClusterSuspended", f"RayCluster {obs.cluster_name} is suspended")
    if obs.pod_problems:
        return Cond("False", "PodProblem", "; ".join(obs.pod_problems))
    reason = ((obs.cluster.get("status") or {}).get("reason") or "")
    return Cond("False", "ClusterProvisioning",
                f"RayCluster {obs.cluster_name} is {state or 'provisioning'}" + (f": {reason}" if reason else ""))


def _suspend(obs: Observed, draft: _Draft) -> _Draft:
    draft.phase, draft.reason = Phase.SUSPENDED, "Suspended"
    draft.message = "spec.suspend is true: the Ray job is stopped and the RayCluster suspended"
    if obs.rayjob is not None:
        draft.actions.append(StopRayJob(obs.rayjob_name))
    if obs.owns_cluster and obs.cluster is not None and not (obs.cluster.get("spec") or {}).get("suspend"):
        draft.actions.append(SuspendCluster(True))
    draft.retrying = Cond("False", "Suspended")
    return draft


def _resume(obs: Observed, draft: _Draft) -> _Draft:
    """Back from Suspended: a new attempt on the (unsuspended) cluster; deadline clocks restart."""
    draft.attempt = obs.old.attempt + 1
    draft.start_time = rfc3339(obs.now)
    draft.phase, draft.reason = Phase.PROVISIONING, "Resumed"
    draft.message = f"resumed: starting attempt {draft.attempt}"
    if obs.owns_cluster and obs.cluster is None:
        draft.actions.append(CreateCluster())
    elif obs.owns_cluster and (obs.cluster.get("spec") or {}).get("suspend"):
        draft.actions.append(SuspendCluster(False))
    draft.actions.append(CreateRayJob(draft.attempt))
    return draft


def _live(obs: Observed) -> _Draft:
    old, spec = obs.old, obs.job.spec
    draft = _carry(old)
    draft.start_time = old.start_time or rfc3339(obs.now)
    draft.cluster_ready = _cluster_condition(obs)
    job_status, deployment, ray_message = _rayjob_status(obs.rayjob)

    if job_status == "SUCCEEDED":
        return _succeeded(obs, draft)
    if spec.suspend:
        return _suspend(obs, draft)
    if old.phase == Phase.SUSPENDED:
        return _resume(obs, draft)

    draft.attempt = max(old.attempt, 1)
    if obs.owns_cluster and obs.cluster is None:
        draft.actions.append(CreateCluster())
    elif (obs.owns_cluster and (obs.cluster.get("spec") or {}).get("suspend")
          and not kueue_queue(obs)):
        # Without Kueue only this operator suspends the cluster; a live job needs it back.
        # With Kueue, a suspended cluster is waiting for admission: Kueue unsuspends it.
        draft.actions.append(SuspendCluster(False))

    if obs.rayjob is None or old.attempt == 0:
        if obs.cluster is not None or obs.owns_cluster:
            draft.actions.append(CreateRayJob(draft.attempt))
        draft.phase = Phase.RUNNING if old.phase == Phase.RUNNING else Phase.PROVISIONING
        draft.reason = draft.cluster_ready.reason if obs.cluster is None else "Submitting"
        draft.message = draft.cluster_ready.message if obs.cluster is None else f"starting attempt {draft.attempt}"
    elif job_status in FINISHED_JOB_STATUSES or deployment in FAILED_DEPLOYMENTS:
        _attempt_failed(obs, draft, job_status or deployment, ray_message)
    elif job_status == "RUNNING":
        draft.phase, draft.reason = Phase.RUNNING, "Running"
        draft.message = f"attempt {draft.attempt} running"
        draft.retrying = Cond("False", "AttemptRunning")
    else:
        waiting = deployment or "Initializing"
        draft.phase = Phase.RUNNING if old.phase == Phase.RUNNING else Phase.PROVISIONING
        if draft.cluster_ready.status == "True":
            draft.reason, draft.message = "Submitting", f"attempt {draft.attempt}: RayJob is {waiting}"
        else:
            draft.reason, draft.message = draft.cluster_ready.reason, draft.cluster_ready.message

    if not draft.phase.is_terminal():
        _deadlines(obs, draft)
    return draft


def _succeeded(obs: Observed, draft: _Draft) -> _Draft:
    draft.attempt = max(obs.old.attempt, 1)
    draft.phase, draft.reason = Phase.SUCCEEDED, "Succeeded"
    draft.message = f"attempt {draft.attempt} succeeded"
    draft.completion_time = rfc3339(obs.now)
    draft.retrying = Cond("False", "Succeeded")
    return draft


def _attempt_failed(obs: Observed, draft: _Draft, how: str, ray_message: str) -> None:
    spec = obs.job.spec
    detail = f"attempt {draft.attempt} {how.lower()}" + (f": {ray_message}" if ray_message else "")
    if too_many_failed_files(obs.progress, spec.failure_policy.max_failed_file_ratio):
        snap = obs.progress
        _fail(obs, draft, "TooManyFailedFiles",
              f"{snap.files_failed} of {snap.files_total} files failed, above "
              f"failurePolicy.maxFailedFileRatio {spec.failure_policy.max_failed_file_ratio:g}; {detail}")
        return
    draft.failed_attempts = obs.old.failed_attempts + 1
    if draft.failed_attempts <= spec.retries.limit:
        draft.attempt += 1
        draft.actions.append(CreateRayJob(draft.attempt))
        draft.phase = Phase.RUNNING if obs.old.phase == Phase.RUNNING else Phase.PROVISIONING
        draft.reason = "Retrying"
        draft.message = (f"{detail}; starting attempt {draft.attempt} "
                         f"(retry {draft.failed_attempts} of {spec.retries.limit})")
        draft.retrying = Cond("True", "AttemptFailed", draft.message)
        draft.events.append(Event("Warning", "AttemptFailed", draft.message))
        return
    reason = "RetriesExhausted" if spec.retries.limit else "RayJobFailed"
    _fail(obs, draft, reason, detail + (f" (after {spec.retries.limit} retries)" if spec.retries.limit else ""))


def _fail(obs: Observed, draft: _Draft, reason: str, message: str) -> None:
    draft.phase, draft.reason, draft.message = Phase.FAILED, reason, message
    draft.completion_time = rfc3339(obs.now)
    draft.retrying = Cond("False", reason)
    job_status, _, _ = _rayjob_status(obs.rayjob)
    if obs.rayjob is not None and job_status not in FINISHED_JOB_STATUSES:
        draft.actions.append(StopRayJob(obs.rayjob_name))


def _deadlines(obs: Observed, draft: _Draft) -> None:
    spec = obs.job.spec
    elapsed = seconds_since(draft.start_time, obs.now) or 0.0
    never_ran = draft.phase in (Phase.PENDING, Phase.PROVISIONING)
    if never_ran and elapsed > spec.startup_deadline_seconds:
        stuck = "; ".join(obs.pod_problems) or draft.message
        _fail(obs, draft, "StartupDeadlineExceeded",
              f"not running {spec.startup_deadline_seconds}s after start (startupDeadlineSeconds)"
              + (f": {stuck}" if stuck else ""))
        draft.actions = [a for a in draft.actions if not isinstance(a, CreateCluster | CreateRayJob)]
    elif spec.active_deadline_seconds is not None and elapsed > spec.active_deadline_seconds:
        _fail(obs, draft, "DeadlineExceeded",
              f"ran longer than activeDeadlineSeconds={spec.active_deadline_seconds}")
        draft.actions = [a for a in draft.actions if not isinstance(a, CreateCluster | CreateRayJob)]


def _finish(obs: Observed, draft: _Draft) -> Decision:
    old = obs.old
    spec_names = [e.name for e in obs.job.spec.extractors] if obs.job else []
    wanted = phase_conditions(draft.phase, draft.reason, draft.message)
    if draft.cluster_ready is not None:
        wanted["ClusterReady"] = draft.cluster_ready
    if draft.retrying is not None:
        wanted["Retrying"] = draft.retrying
    elif draft.phase.is_terminal() and find(old.conditions, "Retrying"):
        wanted["Retrying"] = Cond("False", draft.reason)

    status = ExtractionJobStatus(
        phase=draft.phase,
        reason=draft.reason,
        message=draft.message,
        observed_generation=obs.generation,
        conditions=merge_conditions(old.conditions, wanted, obs.now, obs.generation),
        ray_cluster=obs.cluster_name or old.ray_cluster,
        ray_job=_rayjob_name(obs, draft) or old.ray_job,
        dashboard_url=(((obs.rayjob or {}).get("status") or {}).get("dashboardURL") or old.dashboard_url or "")[:512]
        or None,
        attempt=draft.attempt,
        failed_attempts=draft.failed_attempts,
        start_time=draft.start_time,
        completion_time=draft.completion_time,
        progress=progress_from(old.progress, obs.progress, spec_names, obs.now),
        failures=failures_from(old.failures, obs.progress),
        usage=usage_from(old.usage, obs.progress),
    )
    events = list(draft.events)
    if draft.phase != old.phase:
        kind = "Warning" if draft.phase == Phase.FAILED else "Normal"
        events.append(Event(kind, draft.reason or draft.phase.value, f"{draft.phase.value}: {draft.message}"))
    old_cluster = find(old.conditions, "ClusterReady")
    if (draft.cluster_ready and draft.cluster_ready.reason == "PodProblem"
            and (old_cluster is None or old_cluster.message != draft.cluster_ready.message)):
        events.append(Event("Warning", "PodProblem", draft.cluster_ready.message))
    return Decision(status, tuple(draft.actions), tuple(events))


def _rayjob_name(obs: Observed, draft: _Draft) -> str | None:
    if obs.job is None or draft.attempt < 1:
        return None
    return rayjob_name_for(obs.job, draft.attempt)
