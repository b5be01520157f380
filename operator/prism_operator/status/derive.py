"""The one pure function that decides an ExtractionJob's next status and the actions to reach it.

Input: what the operator observed (the job, its old status, the RayCluster, the current attempt's
RayJob, stuck pods, the last progress reading, the dashboard's word on the attempt's Ray job, the
time; for a finished job, its debug ConfigMap). Output: the full new status plus the actions (create,
stop, suspend, delete; save the debug record, scale workers to zero) and the Events to post. Phases
(see prism_api.job_status):

    Pending -> Provisioning -> Running -> Succeeded | Failed ; any live phase <-> Suspended

A failed attempt with retries left starts the next RayJob on the same cluster (condition Retrying);
terminal phases are sticky, and on a finished job only its cleanup acts (status/cleanup.py: the debug
record of a job that ended with failures, then spec.cleanup.onFailure or ttlSecondsAfterFinished).
Deadlines follow Kubernetes Jobs: the clock starts at startTime, which a resume resets.

Fencing: KubeRay can mark a RayJob Failed while its Ray job still runs and, with clusterSelector,
never stops it. So before the next attempt starts, and before a job becomes Failed or Suspended,
the current attempt's Ray job is stopped through the dashboard and confirmed stopped; meanwhile the
job keeps its live phase with reason StoppingAttempt. Whether it has stopped is an observation
(Observed.ray_job_state); when derive needs it and it was not read, the decision says so
(wants_ray_job_state) and the reconciler reads it and derives again.

Why an attempt failed is what the pipeline said (its outcome, on the progress endpoint or in Ray's
message), not inferred from counters: TooManyFailedFiles and InvalidSpec are not retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prism_api import ExtractionJobStatus, Phase
from prism_api.child_names import MAX_ATTEMPT
from prism_api.job_status import DebugRecord
from prism_api.outcome import Outcome, OutcomeReport

from ..builders.labels import kueue_queue as job_kueue_queue
from ..builders.rayjob import rayjob_name_for
from .cleanup import after_finish
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
    StopViaDashboard,
    SuspendCluster,
)
from .progress_fields import failures_from, progress_from, usage_from

FINISHED_JOB_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
FAILED_DEPLOYMENTS = frozenset({"Failed", "ValidationFailed"})
# Reasons: a live job waiting for its attempt's Ray job to stop; a suspended job whose RayCluster is
# as it should be (suspended, or deleted under Kueue), and one whose RayCluster is not yet.
STOPPING_ATTEMPT = "StoppingAttempt"
SUSPENDED = "Suspended"
SUSPENDING = "Suspending"
ATTEMPTS_EXHAUSTED = "AttemptsExhausted"
# How long to wait for the dashboard to confirm that an attempt's Ray job stopped before going on
# without that (with a Warning Event): the head may be down or the cluster gone, and a job must never
# hang on it. Ray escalates a stop to SIGKILL within seconds, so a reachable dashboard confirms well
# within this; two minutes also covers a head pod restarting.
FENCE_TIMEOUT_SECONDS = 120
# The pipeline's verdicts that another attempt would repeat.
FINAL_OUTCOMES = frozenset({Outcome.TOO_MANY_FAILED_FILES, Outcome.INVALID_SPEC})
# Ray's message (a log tail) in status: its head and its tail.
MESSAGE_CLIP = 1000


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
    fenced: bool | None = None            # whether the current attempt's Ray job is known stopped
    wants_ray_job_state: bool = False
    fencing: str = ""
    debug: DebugRecord | None = None
    wants_debug_config_map: bool = False


def cluster_state(cluster: dict | None) -> str:
    return ((cluster or {}).get("status") or {}).get("state", "") if cluster else ""


def kueue_queue(obs: Observed) -> str:
    """The Kueue LocalQueue the job's RayCluster is queued in ("" when Kueue is not used)."""
    return job_kueue_queue(obs.job) if obs.job else ""


def _clip(text: str) -> str:
    return text if len(text) <= 2 * MESSAGE_CLIP else f"{text[:MESSAGE_CLIP]} ... {text[-MESSAGE_CLIP:]}"


def _rayjob_status(rayjob: dict | None) -> tuple[str, str, str]:
    status = (rayjob or {}).get("status") or {}
    message = status.get("message") or status.get("reason") or ""
    return status.get("jobStatus", "") or "", status.get("jobDeploymentStatus", "") or "", _clip(message)


def _may_run(rayjob: dict | None) -> bool:
    """The RayJob exists and KubeRay does not know its Ray job to be over (or never submitted)."""
    job_status, deployment, _ = _rayjob_status(rayjob)
    return rayjob is not None and job_status not in FINISHED_JOB_STATUSES and deployment != "ValidationFailed"


def _deleting(obj: dict | None) -> bool:
    return bool(((obj or {}).get("metadata") or {}).get("deletionTimestamp"))


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
    """Terminal: keep the outcome; stop a RayJob still running; then the cleanup (status/cleanup.py):
    the debug record, then the RayCluster kept (cleanup.onFailure) or deleted (ttlSecondsAfterFinished)."""
    draft = _carry(obs.old)
    if _may_run(obs.rayjob):
        draft.actions.append(StopRayJob(obs.rayjob_name))
    after = after_finish(obs)
    draft.actions += [a for a in after.actions if a not in draft.actions]
    draft.events += after.events
    draft.cluster_ready = after.cluster_ready
    draft.debug = after.debug
    draft.wants_debug_config_map = after.wants_debug_config_map
    return draft


def _cluster_condition(obs: Observed) -> Cond:
    state = cluster_state(obs.cluster)
    if obs.cluster is None:
        if obs.owns_cluster and obs.job.spec.suspend:
            return Cond("False", "NoCluster", f"no RayCluster {obs.cluster_name} while the job is suspended; "
                        "resuming creates it")
        if obs.owns_cluster:
            return Cond("False", "ClusterCreating", f"creating RayCluster {obs.cluster_name}")
        return Cond("False", "ClusterNotFound",
                    f"RayCluster {obs.cluster_name} (spec.cluster.existing) not found in this namespace")
    if _deleting(obs.cluster):
        return Cond("False", "ClusterDeleting", f"RayCluster {obs.cluster_name} is being deleted")
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


# --- fencing -------------------------------------------------------------------------------------

def _ray_job_stopped(obs: Observed, draft: _Draft) -> bool:
    """Whether the current attempt's Ray job is known not to run (or confirming that took longer
    than FENCE_TIMEOUT_SECONDS). While not, the draft asks for a stop through the dashboard."""
    if draft.fenced is None:
        draft.fenced = _fence(obs, draft)
    return draft.fenced


def _fence(obs: Observed, draft: _Draft) -> bool:
    if obs.old.attempt < 1 or not obs.submission_id:
        return True
    state = cluster_state(obs.cluster)
    if obs.cluster is None or state == "suspended":
        return True  # no head: no Ray job
    job_status, _, _ = _rayjob_status(obs.rayjob)
    if state != "ready" and not job_status:
        # KubeRay submits only to a ready cluster, and `ready` stays until a suspend: never submitted.
        return True
    ray = obs.ray_job_state
    if ray is None:
        draft.wants_ray_job_state = True
        return False
    if ray.stopped:
        return True
    waited = (obs.now - obs.fence_since).total_seconds() if obs.fence_since else 0.0
    if waited >= FENCE_TIMEOUT_SECONDS:
        why = ray.error or f"Ray says {ray.status}"
        draft.events.append(Event(
            "Warning", "AttemptNotStopped",
            f"could not confirm within {FENCE_TIMEOUT_SECONDS}s that attempt {obs.old.attempt}'s Ray job "
            f"{obs.submission_id} stopped ({why}); going on without that"))
        return True
    draft.fencing = obs.submission_id
    if not ray.error:
        draft.actions.append(StopViaDashboard(obs.submission_id))
    return False


def _stopping(obs: Observed, draft: _Draft, message: str) -> None:
    """Stay live (reason StoppingAttempt) until the attempt's Ray job has stopped; start nothing."""
    draft.phase = Phase.RUNNING if obs.old.phase == Phase.RUNNING else Phase.PROVISIONING
    draft.reason, draft.message = STOPPING_ATTEMPT, message
    draft.actions = [a for a in draft.actions if not isinstance(a, CreateCluster | CreateRayJob)]
    if obs.old.reason != STOPPING_ATTEMPT and not any(e.reason == STOPPING_ATTEMPT for e in draft.events):
        draft.events.append(Event("Normal", STOPPING_ATTEMPT, message))


# --- suspend and resume --------------------------------------------------------------------------

def _suspend(obs: Observed, draft: _Draft) -> _Draft:
    """Stop the Ray job (confirmed), delete the RayJob, and park the owned RayCluster: suspended, or,
    under Kueue (which would admit a suspended cluster again and let its idle pods hold quota),
    deleted."""
    if obs.old.phase != Phase.SUSPENDED and not _ray_job_stopped(obs, draft):
        _stopping(obs, draft, f"suspending: stopping attempt {obs.old.attempt}'s Ray job first")
        return draft
    draft.phase = Phase.SUSPENDED
    draft.retrying = Cond("False", "Suspended")
    draft.actions = [a for a in draft.actions if not isinstance(a, CreateCluster | CreateRayJob)]
    if obs.rayjob is not None:
        draft.actions.append(StopRayJob(obs.rayjob_name))
    cluster, name = obs.cluster, obs.cluster_name
    stopped = "spec.suspend is true: the Ray job is stopped"
    if not obs.owns_cluster:
        settled, draft.message = True, f"{stopped}; the shared RayCluster {name} stays"
    elif kueue_queue(obs):
        settled = cluster is None
        if cluster is not None and not _deleting(cluster):
            draft.actions.append(DeleteCluster(name))
        draft.message = (f"{stopped} and the RayCluster deleted (Kueue would admit a suspended one again); "
                         "resuming recreates it and queues it in Kueue"
                         + ("" if settled else f"; deleting RayCluster {name}"))
    else:
        settled = cluster is None or cluster_state(cluster) == "suspended"
        if cluster is not None and not (cluster.get("spec") or {}).get("suspend"):
            draft.actions.append(SuspendCluster(True))
        draft.message = f"{stopped} and the RayCluster suspended" + (
            "" if settled else f"; waiting for RayCluster {name} to stop its pods")
    draft.reason = SUSPENDED if settled else SUSPENDING
    return draft


def _resume(obs: Observed, draft: _Draft) -> _Draft:
    """Back from Suspended: a new attempt on the (unsuspended or recreated) cluster; deadline clocks
    restart."""
    attempt = obs.old.attempt + 1
    if attempt > MAX_ATTEMPT:
        _end(obs, draft, ATTEMPTS_EXHAUSTED, f"cannot resume: attempt {attempt} would be past the last attempt "
             f"({MAX_ATTEMPT}) a RayJob name has room for", fence=False)
        return draft
    draft.attempt = attempt
    draft.start_time = rfc3339(obs.now)
    draft.phase, draft.reason = Phase.PROVISIONING, "Resumed"
    draft.message = f"resumed: starting attempt {draft.attempt}"
    if obs.owns_cluster and obs.cluster is None:
        draft.actions.append(CreateCluster())
    elif (obs.owns_cluster and (obs.cluster.get("spec") or {}).get("suspend") and not kueue_queue(obs)
          and not _deleting(obs.cluster)):
        draft.actions.append(SuspendCluster(False))
    draft.actions.append(CreateRayJob(draft.attempt))
    return draft


# --- a live job ----------------------------------------------------------------------------------

def _live(obs: Observed) -> _Draft:
    old, spec = obs.old, obs.job.spec
    draft = _carry(old)
    draft.start_time = old.start_time or rfc3339(obs.now)
    draft.cluster_ready = _cluster_condition(obs)
    job_status, deployment, ray_message = _rayjob_status(obs.rayjob)

    if old.attempt > MAX_ATTEMPT:  # a status written by hand: no RayJob name has room for it
        _end(obs, draft, ATTEMPTS_EXHAUSTED, f"status.attempt {old.attempt} is past the last attempt "
             f"({MAX_ATTEMPT}) a RayJob name has room for", fence=False)
        return draft
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
          and not kueue_queue(obs) and not _deleting(obs.cluster)):
        # Without Kueue only this operator suspends the cluster; a live job needs it back.
        # With Kueue, a suspended cluster is waiting for admission: Kueue unsuspends it.
        draft.actions.append(SuspendCluster(False))

    if obs.rayjob is None or old.attempt == 0:
        if obs.cluster is not None or obs.owns_cluster:
            draft.actions.append(CreateRayJob(draft.attempt))
        draft.phase = Phase.RUNNING if old.phase == Phase.RUNNING else Phase.PROVISIONING
        draft.reason = draft.cluster_ready.reason if obs.cluster is None else "Submitting"
        draft.message = draft.cluster_ready.message if obs.cluster is None else f"starting attempt {draft.attempt}"
    elif deployment == "ValidationFailed":
        # KubeRay refused the RayJob (nothing was submitted); the same RayJob would be refused again.
        _end(obs, draft, "ValidationFailed", f"attempt {draft.attempt}: KubeRay refused the RayJob"
             + (f": {ray_message}" if ray_message else ""), fence=False)
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


def _succeeded(obs: Observed, draft: _Draft, note: str = "") -> _Draft:
    draft.attempt = max(obs.old.attempt, 1)
    draft.phase, draft.reason = Phase.SUCCEEDED, "Succeeded"
    draft.message = f"attempt {draft.attempt} succeeded" + note
    draft.completion_time = rfc3339(obs.now)
    draft.retrying = Cond("False", "Succeeded")
    draft.actions = [a for a in draft.actions if not isinstance(a, CreateCluster | CreateRayJob)]
    return draft


def _printed(obs: Observed) -> OutcomeReport | None:
    """The outcome line the current attempt's driver printed last, as Ray's message carries it."""
    return OutcomeReport.from_text((((obs.rayjob or {}).get("status") or {}).get("message")) or "")


def _outcome(obs: Observed) -> OutcomeReport | None:
    """The pipeline's own verdict on the current attempt: from its progress endpoint (the last good
    reading), else the outcome line its driver printed last, which Ray's message carries."""
    printed = _printed(obs)
    served = obs.progress if obs.progress is not None and obs.progress.outcome is not None else None
    if served is None:
        return printed
    if not served.message and printed is not None and printed.outcome == served.outcome:
        return printed  # the same verdict, with the pipeline's words
    return OutcomeReport(served.outcome, served.message)


def _attempt_failed(obs: Observed, draft: _Draft, how: str, ray_message: str) -> None:
    spec = obs.job.spec
    ray = obs.ray_job_state
    if ray is not None and not ray.error and ray.status == "SUCCEEDED":
        # Ray's own record of the job wins over KubeRay's (which reports FAILED, for example, after
        # it lost the dashboard for a while).
        _succeeded(obs, draft, f" (Ray reports SUCCEEDED; the RayJob said {how})")
        return
    report = _outcome(obs)
    said = report.message if report is not None and report.message else ray_message
    detail = f"attempt {draft.attempt} {how.lower()}" + (f": {_clip(said)}" if said else "")
    if report is not None and report.outcome in FINAL_OUTCOMES:
        if not report.message and report.outcome == Outcome.TOO_MANY_FAILED_FILES and obs.progress is not None:
            report_counts, listed = obs.progress.counts, obs.progress.files_total
            detail += (f": {report_counts.files_failed} of {listed} files failed, above "
                       f"failurePolicy.maxFailedFileRatio {spec.failure_policy.max_failed_file_ratio:g}")
        _end(obs, draft, report.outcome.value, f"{detail} (not retried: the pipeline reported "
             f"{report.outcome.value})")
        return
    failed = obs.old.failed_attempts + 1
    if failed > spec.retries.limit:
        reason = "RetriesExhausted" if spec.retries.limit else "RayJobFailed"
        _end(obs, draft, reason, detail + (f" (after {spec.retries.limit} retries)" if spec.retries.limit else ""))
        return
    attempt = draft.attempt + 1
    if attempt > MAX_ATTEMPT:
        _end(obs, draft, ATTEMPTS_EXHAUSTED, f"{detail}; attempt {attempt} would be past the last attempt "
             f"({MAX_ATTEMPT}) a RayJob name has room for")
        return
    if not _ray_job_stopped(obs, draft):
        _stopping(obs, draft, f"{detail}; stopping its Ray job before attempt {attempt}")
        draft.retrying = Cond("True", STOPPING_ATTEMPT, draft.message)
        return
    draft.failed_attempts = failed
    draft.attempt = attempt
    draft.actions.append(CreateRayJob(draft.attempt))
    draft.phase = Phase.RUNNING if obs.old.phase == Phase.RUNNING else Phase.PROVISIONING
    draft.reason = "Retrying"
    draft.message = (f"{detail}; starting attempt {draft.attempt} "
                     f"(retry {draft.failed_attempts} of {spec.retries.limit})")
    draft.retrying = Cond("True", "AttemptFailed", draft.message)
    draft.events.append(Event("Warning", "AttemptFailed", draft.message))


def _end(obs: Observed, draft: _Draft, reason: str, message: str, *, fence: bool = True) -> None:
    """Fail the job: once (with `fence`) the current attempt's Ray job is known to have stopped."""
    draft.actions = [a for a in draft.actions if not isinstance(a, CreateCluster | CreateRayJob)]
    if fence and not _ray_job_stopped(obs, draft):
        _stopping(obs, draft, f"{message}; stopping attempt {obs.old.attempt}'s Ray job before failing")
        return
    draft.phase, draft.reason, draft.message = Phase.FAILED, reason, message
    draft.completion_time = rfc3339(obs.now)
    draft.retrying = Cond("False", reason)
    if _may_run(obs.rayjob):
        draft.actions.append(StopRayJob(obs.rayjob_name))


def _deadlines(obs: Observed, draft: _Draft) -> None:
    spec = obs.job.spec
    elapsed = seconds_since(draft.start_time, obs.now) or 0.0
    never_ran = draft.phase in (Phase.PENDING, Phase.PROVISIONING)
    if never_ran and elapsed > spec.startup_deadline_seconds:
        stuck = "; ".join(obs.pod_problems) or draft.message
        _end(obs, draft, "StartupDeadlineExceeded",
             f"not running {spec.startup_deadline_seconds}s after start (startupDeadlineSeconds)"
             + (f": {stuck}" if stuck else ""))
    elif spec.active_deadline_seconds is not None and elapsed > spec.active_deadline_seconds:
        _end(obs, draft, "DeadlineExceeded", f"ran longer than activeDeadlineSeconds={spec.active_deadline_seconds}")


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
        failures=failures_from(old.failures, obs.progress, _printed(obs)),
        usage=usage_from(old.usage, obs.progress),
        debug=draft.debug or old.debug,
    )
    events = list(draft.events)
    if draft.phase != old.phase:
        kind = "Warning" if draft.phase == Phase.FAILED else "Normal"
        events.append(Event(kind, draft.reason or draft.phase.value, f"{draft.phase.value}: {draft.message}"))
    old_cluster = find(old.conditions, "ClusterReady")
    if (draft.cluster_ready and draft.cluster_ready.reason == "PodProblem"
            and (old_cluster is None or old_cluster.message != draft.cluster_ready.message)):
        events.append(Event("Warning", "PodProblem", draft.cluster_ready.message))
    return Decision(status, tuple(draft.actions), tuple(events), wants_ray_job_state=draft.wants_ray_job_state,
                    fencing=draft.fencing, wants_debug_config_map=draft.wants_debug_config_map)


def _rayjob_name(obs: Observed, draft: _Draft) -> str | None:
    if obs.job is None or not 1 <= draft.attempt <= MAX_ATTEMPT:
        return None
    return rayjob_name_for(obs.job, draft.attempt)
