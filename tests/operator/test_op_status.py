"""Status derivation, table-driven over the RayCluster/RayJob states that matter; the status patch;
pod problems; progress parsing."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from prism_api import Condition, ExtractionJobStatus, Failures, Phase, Progress, parse_job
from prism_api.job_status import DebugRecord
from prism_api.outcome import Outcome, OutcomeReport
from prism_api.progress_report import MAX_FAILURE_SAMPLES, Counts, FailedFile, ProgressReport, ReportIdentity
from prism_operator.builders.raycluster import owned_cluster_name
from prism_operator.dashboard_client import RayJobState
from prism_operator.status.cleanup import DEBUG_SAVE_TIMEOUT_SECONDS, cleanup_pending
from prism_operator.status.derive import FENCE_TIMEOUT_SECONDS, derive
from prism_operator.status.model import (
    CreateCluster,
    CreateRayJob,
    DebugSaveFailure,
    DeleteCluster,
    Observed,
    SaveDebug,
    ScaleWorkersToZero,
    StopRayJob,
    StopViaDashboard,
    SuspendCluster,
)
from prism_operator.status.patch import merge_patch
from prism_operator.status.pods import pod_problems

from .conftest import BASE_JOB, NAMESPACE

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
T0 = "2026-11-22T11:59:00Z"  # one minute before NOW
READY = {"spec": {}, "status": {"state": "ready"}}
PROVISIONING = {"spec": {}, "status": {}}
SUSPENDED = {"spec": {"suspend": True}, "status": {"state": "suspended"}}


def job(kueue: bool = False, **spec):
    body = copy.deepcopy(BASE_JOB)
    body["metadata"]["uid"] = "u1"
    if not kueue:
        body["metadata"].pop("labels")  # not queued in Kueue (see the Kueue tests)
    body["spec"].update(spec)
    return parse_job(body, target="cluster")


CLUSTER = owned_cluster_name(job())
ABSENT = RayJobState(found=False)  # the dashboard has no such job (404)
RUNNING = RayJobState(status="RUNNING")
STOPPED = RayJobState(status="STOPPED")
UNREACHABLE = RayJobState(error="http://c-head-svc.media.svc:8265/api/jobs/x: ClientConnectorError")


def rayjob(job_status: str, deployment: str = "Running", message: str = "") -> dict:
    return {"status": {"jobStatus": job_status, "jobDeploymentStatus": deployment, "message": message}}


def status(phase: Phase, attempt: int = 1, **kw) -> ExtractionJobStatus:
    return ExtractionJobStatus(phase=phase, attempt=attempt, start_time=T0, **kw)


def observe(old: ExtractionJobStatus, spec: dict | None = None, cluster=READY, rj=None, now=NOW, kueue=False,
            **kw) -> Observed:
    name = f"{CLUSTER}-a{old.attempt}" if old.attempt else ""
    return Observed(job=job(kueue, **(spec or {})), old=old, now=now, generation=3, cluster_name=CLUSTER,
                    owns_cluster=not (spec or {}).get("cluster", {}).get("existing"), cluster=cluster,
                    rayjob=rj, rayjob_name=name, submission_id=name, **kw)


def decide(obs: Observed, ray: RayJobState = ABSENT):
    """derive as the reconciler runs it: again with the dashboard's answer when the decision asks."""
    decision = derive(obs)
    if decision.wants_ray_job_state:
        assert obs.ray_job_state is None
        decision = derive(dataclasses.replace(obs, ray_job_state=ray))
        assert not decision.wants_ray_job_state
    return decision


def cond(st: ExtractionJobStatus, kind: str) -> Condition | None:
    return next((c for c in st.conditions if c.type == kind), None)


CASES = [
    # name, old status, spec changes, cluster, rayjob -> phase, reason, actions
    ("new job creates the cluster and attempt 1",
     ExtractionJobStatus(), {}, None, None, Phase.PROVISIONING, "ClusterCreating", [CreateCluster(), CreateRayJob(1)]),
    ("cluster provisioning, job initializing",
     status(Phase.PROVISIONING), {}, PROVISIONING, rayjob("", "Initializing"), Phase.PROVISIONING,
     "ClusterProvisioning", []),
    ("cluster ready, job pending",
     status(Phase.PROVISIONING), {}, READY, rayjob("PENDING"), Phase.PROVISIONING, "Submitting", []),
    ("job running",
     status(Phase.PROVISIONING), {}, READY, rayjob("RUNNING"), Phase.RUNNING, "Running", []),
    ("RayJob vanished: recreated under the same name",
     status(Phase.RUNNING), {}, READY, None, Phase.RUNNING, "Submitting", [CreateRayJob(1)]),
    ("cluster vanished: recreated",
     status(Phase.RUNNING), {}, None, rayjob("RUNNING"), Phase.RUNNING, "Running", [CreateCluster()]),
    ("succeeded",
     status(Phase.RUNNING), {}, READY, rayjob("SUCCEEDED", "Complete"), Phase.SUCCEEDED, "Succeeded", []),
    ("failed with a retry left",
     status(Phase.RUNNING), {"retries": {"limit": 1}}, READY, rayjob("FAILED", "Complete", "OOM"),
     Phase.RUNNING, "Retrying", [CreateRayJob(2)]),
    ("ValidationFailed is not retried",
     status(Phase.PROVISIONING), {"retries": {"limit": 3}}, READY, rayjob("", "ValidationFailed", "bad spec"),
     Phase.FAILED, "ValidationFailed", []),
    ("submission failed (deployment Failed) with a retry left",
     status(Phase.PROVISIONING), {"retries": {"limit": 1}}, READY, rayjob("", "Failed", "submitter crashed"),
     Phase.PROVISIONING, "Retrying", [CreateRayJob(2)]),
    ("failed, retries used up",
     status(Phase.RUNNING, attempt=2, failed_attempts=1), {"retries": {"limit": 1}}, READY,
     rayjob("FAILED", "Complete", "OOM"), Phase.FAILED, "RetriesExhausted", []),
    ("failed, no retries configured",
     status(Phase.RUNNING), {"retries": {"limit": 0}}, READY, rayjob("STOPPED", "Complete"),
     Phase.FAILED, "RayJobFailed", []),
    ("suspend a running job (its Ray job already gone)",
     status(Phase.RUNNING), {"suspend": True}, READY, rayjob("RUNNING"), Phase.SUSPENDED, "Suspending",
     [StopRayJob(f"{CLUSTER}-a1"), SuspendCluster(True)]),
    ("suspend: the cluster's pods are gone, suspended for good",
     status(Phase.SUSPENDED, reason="Suspending"), {"suspend": True}, SUSPENDED, None, Phase.SUSPENDED,
     "Suspended", []),
    ("stay suspended",
     status(Phase.SUSPENDED), {"suspend": True}, SUSPENDED, None, Phase.SUSPENDED, "Suspended", []),
    ("owned cluster found suspended without Kueue: unsuspend it",
     status(Phase.RUNNING), {}, SUSPENDED, rayjob("RUNNING"), Phase.RUNNING, "Running", [SuspendCluster(False)]),
    ("resume",
     status(Phase.SUSPENDED), {}, SUSPENDED, None, Phase.PROVISIONING, "Resumed",
     [SuspendCluster(False), CreateRayJob(2)]),
    ("created suspended: nothing starts",
     ExtractionJobStatus(), {"suspend": True}, None, None, Phase.SUSPENDED, "Suspended", []),
    ("startup deadline",
     status(Phase.PROVISIONING), {"startupDeadlineSeconds": 30}, PROVISIONING, rayjob("", "Initializing"),
     Phase.FAILED, "StartupDeadlineExceeded", [StopRayJob(f"{CLUSTER}-a1")]),
    ("startup deadline does not apply once running",
     status(Phase.RUNNING), {"startupDeadlineSeconds": 30}, READY, rayjob("RUNNING"), Phase.RUNNING, "Running", []),
    ("active deadline",
     status(Phase.RUNNING), {"activeDeadlineSeconds": 30}, READY, rayjob("RUNNING"), Phase.FAILED,
     "DeadlineExceeded", [StopRayJob(f"{CLUSTER}-a1")]),
    ("terminal is sticky",
     status(Phase.FAILED, completion_time=T0, reason="DeadlineExceeded"), {}, READY,
     rayjob("STOPPED", "Complete"), Phase.FAILED, "DeadlineExceeded", []),
    ("ttl not yet due",
     status(Phase.SUCCEEDED, completion_time=T0, reason="Succeeded"), {"ttlSecondsAfterFinished": 120}, READY,
     rayjob("SUCCEEDED", "Complete"), Phase.SUCCEEDED, "Succeeded", []),
    ("ttl due: the cluster goes",
     status(Phase.SUCCEEDED, completion_time=T0, reason="Succeeded"), {"ttlSecondsAfterFinished": 30}, READY,
     rayjob("SUCCEEDED", "Complete"), Phase.SUCCEEDED, "Succeeded", [DeleteCluster(CLUSTER)]),
    ("existing cluster missing: wait, create nothing",
     ExtractionJobStatus(), {"cluster": {"existing": "shared"}}, None, None, Phase.PROVISIONING,
     "ClusterNotFound", []),
    ("existing cluster: ttl removes only the RayJob",
     status(Phase.SUCCEEDED, completion_time=T0, reason="Succeeded"),
     {"cluster": {"existing": "shared"}, "ttlSecondsAfterFinished": 0}, READY, rayjob("SUCCEEDED", "Complete"),
     Phase.SUCCEEDED, "Succeeded", [StopRayJob(f"{CLUSTER}-a1")]),
]


@pytest.mark.parametrize("name,old,spec,cluster,rj,phase,reason,actions", CASES, ids=[c[0] for c in CASES])
def test_derive(name, old, spec, cluster, rj, phase, reason, actions):
    decision = decide(observe(old, spec, cluster=cluster, rj=rj))
    assert (decision.status.phase, decision.status.reason) == (phase, reason), decision.status.message
    assert list(decision.actions) == actions
    st = decision.status
    assert st.observed_generation == 3
    assert all(c.observed_generation == 3 for c in st.conditions)
    assert [c.type for c in st.conditions][:5] == ["Ready", "Progressing", "Succeeded", "Failed", "Suspended"]
    assert cond(st, "Progressing").status == ("True" if phase in (Phase.PROVISIONING, Phase.RUNNING) else "False")
    assert cond(st, "Failed").status == ("True" if phase == Phase.FAILED else "False")
    assert cond(st, "Suspended").status == ("True" if phase == Phase.SUSPENDED else "False")
    assert cond(st, "Ready").status == ("True" if phase == Phase.SUCCEEDED else "False")
    if phase.is_terminal():
        assert st.completion_time
    else:
        assert st.completion_time is None


def test_retry_counts_and_messages():
    d = decide(observe(status(Phase.RUNNING), {"retries": {"limit": 2}}, rj=rayjob("FAILED", "Complete", "OOM")))
    st = d.status
    assert (st.attempt, st.failed_attempts, st.ray_job) == (2, 1, f"{CLUSTER}-a2")
    assert cond(st, "Retrying").status == "True" and "OOM" in cond(st, "Retrying").message
    assert [e.reason for e in d.events] == ["AttemptFailed"]
    # The next attempt running clears Retrying; the count stays.
    d2 = derive(observe(st, {"retries": {"limit": 2}}, rj=rayjob("RUNNING")))
    assert cond(d2.status, "Retrying").status == "False" and d2.status.failed_attempts == 1


def test_resume_does_not_spend_a_retry_and_restarts_the_clock():
    old = status(Phase.SUSPENDED, attempt=3, failed_attempts=1)
    st = derive(observe(old, {}, cluster=SUSPENDED)).status
    assert (st.attempt, st.failed_attempts) == (4, 1)
    assert st.start_time == "2026-11-22T12:00:00Z"


def reading(files_total: int, outcome: Outcome | None = None, **counts) -> ProgressReport:
    """A progress reading as the operator gets it from the endpoint."""
    return ProgressReport(ReportIdentity("campaign", NAMESPACE, 1), files_total=files_total,
                          counts=Counts(**counts), outcome=outcome)


RETRYABLE = {"retries": {"limit": 3}, "failurePolicy": {"maxFailedFileRatio": 0.1}}


def test_too_many_failed_files_served_by_the_pipeline_is_not_retried():
    snap = reading(10, Outcome.TOO_MANY_FAILED_FILES, files_done=5, files_failed=5)
    d = decide(observe(status(Phase.RUNNING), RETRYABLE, rj=rayjob("FAILED", "Complete", "exit code 1"),
                       progress=snap))
    assert d.status.phase == Phase.FAILED and d.status.reason == "TooManyFailedFiles"
    assert "5 of 10 files failed" in d.status.message and not d.actions


@pytest.mark.parametrize("outcome", [Outcome.TOO_MANY_FAILED_FILES, Outcome.INVALID_SPEC])
def test_final_outcome_printed_in_rays_message_is_not_retried(outcome):
    """No progress reading (the head restarted, say): the outcome line Ray kept in its message."""
    line = OutcomeReport(outcome, "the pipeline's own words").to_line()
    d = decide(observe(status(Phase.RUNNING), RETRYABLE,
                       rj=rayjob("FAILED", "Failed", f"Job entrypoint command failed, last logs:\n...\n{line}")))
    assert (d.status.phase, d.status.reason) == (Phase.FAILED, outcome.value)
    assert "the pipeline's own words" in d.status.message and not d.actions


def test_the_failed_files_printed_with_the_verdict_reach_the_status_without_any_reading():
    """Another driver held the progress port all along: the verdict line names the failed files."""
    failed = tuple(FailedFile(f"file:///m/broken-{i}.pdf", "decode", "not a PDF") for i in range(12))
    line = OutcomeReport(Outcome.TOO_MANY_FAILED_FILES, "12 of 14 files failed", 12, failed).to_line()
    d = decide(observe(status(Phase.RUNNING), RETRYABLE, rj=rayjob("FAILED", "Failed", f"logs:\n{line}")))
    assert d.status.reason == "TooManyFailedFiles" and d.status.failures.count == 12
    assert [s.uri for s in d.status.failures.samples] == [f.uri for f in failed[:MAX_FAILURE_SAMPLES]]
    assert d.status.failures.samples[0].stage == "decode" and d.status.failures.samples[0].error == "not a PDF"


def test_the_endpoints_final_reading_wins_over_the_verdict_line_when_it_counts_as_many():
    served = reading(4, Outcome.TOO_MANY_FAILED_FILES, files_done=2, files_failed=2)
    served.failures = [FailedFile("file:///m/a.pdf", "decode", "the endpoint's longer words")]
    line = OutcomeReport(Outcome.TOO_MANY_FAILED_FILES, "", 2, (FailedFile("file:///m/a.pdf", "decode", "x"),))
    d = decide(observe(status(Phase.RUNNING), RETRYABLE, rj=rayjob("FAILED", "Failed", line.to_line()),
                       progress=served))
    assert d.status.failures.count == 2 and d.status.failures.samples[0].error == "the endpoint's longer words"
    # An earlier reading (before the last files failed) loses to the driver's final count.
    early = reading(4, files_done=1, files_failed=1)
    d = decide(observe(status(Phase.RUNNING), RETRYABLE, rj=rayjob("FAILED", "Failed", line.to_line()),
                       progress=early))
    assert d.status.failures.count == 2


def test_counters_alone_do_not_decide_the_outcome():
    """Many failed files without the pipeline's verdict: a plain failure, retried."""
    snap = reading(10, files_done=5, files_failed=5)
    d = decide(observe(status(Phase.RUNNING), RETRYABLE, rj=rayjob("FAILED", "Complete", "OOM"), progress=snap))
    assert (d.status.phase, d.status.reason) == (Phase.RUNNING, "Retrying")
    assert d.actions == (CreateRayJob(2),)


def test_failed_outcome_is_retried_with_the_pipelines_message():
    line = OutcomeReport(Outcome.FAILED, "no file finished for 900s").to_line()
    d = decide(observe(status(Phase.RUNNING), RETRYABLE, rj=rayjob("FAILED", "Complete", f"exit 1\n{line}")))
    assert d.status.reason == "Retrying" and "no file finished for 900s" in d.status.message
    assert d.actions == (CreateRayJob(2),)


def test_validation_failed_carries_kuberays_message():
    d = decide(observe(status(Phase.PROVISIONING), RETRYABLE,
                       rj=rayjob("", "ValidationFailed", "suspend is not supported with clusterSelector")))
    assert (d.status.phase, d.status.reason) == (Phase.FAILED, "ValidationFailed")
    assert "suspend is not supported with clusterSelector" in d.status.message
    assert d.status.failed_attempts == 0 and not d.actions


# --- fencing: an attempt's Ray job is stopped, and confirmed stopped, before anything follows ------

FAILED_RJ = rayjob("FAILED", "Failed", "JobStatusCheckTimeoutExceeded")


def test_a_retry_waits_until_the_old_ray_job_has_stopped():
    obs = observe(status(Phase.RUNNING), RETRYABLE, rj=FAILED_RJ)
    first = derive(obs)
    assert first.wants_ray_job_state  # the dashboard is asked only when it matters
    d = decide(obs, RUNNING)
    sid = f"{CLUSTER}-a1"
    assert (d.status.phase, d.status.reason) == (Phase.RUNNING, "StoppingAttempt")
    assert d.actions == (StopViaDashboard(sid),) and d.fencing == sid
    assert d.status.attempt == 1 and d.status.failed_attempts == 0
    assert cond(d.status, "Retrying").reason == "StoppingAttempt"
    assert [e.reason for e in d.events] == ["StoppingAttempt"]
    # Still running next time: ask again, no second Event.
    again = decide(observe(d.status, RETRYABLE, rj=FAILED_RJ, now=NOW + timedelta(seconds=10),
                           fence_since=NOW), RUNNING)
    assert again.actions == (StopViaDashboard(sid),) and again.events == ()
    # Stopped: only now the next attempt.
    done = decide(observe(again.status, RETRYABLE, rj=FAILED_RJ, fence_since=NOW), STOPPED)
    assert (done.status.reason, done.status.attempt, done.status.failed_attempts) == ("Retrying", 2, 1)
    assert done.actions == (CreateRayJob(2),) and done.fencing == ""


def test_an_unreachable_dashboard_delays_at_most_the_bound():
    obs = observe(status(Phase.RUNNING), RETRYABLE, rj=FAILED_RJ,
                  fence_since=NOW - timedelta(seconds=FENCE_TIMEOUT_SECONDS - 1))
    waiting = decide(obs, UNREACHABLE)
    assert waiting.status.reason == "StoppingAttempt" and waiting.actions == ()  # nothing to POST to
    assert waiting.fencing == f"{CLUSTER}-a1"
    late = decide(dataclasses.replace(obs, fence_since=NOW - timedelta(seconds=FENCE_TIMEOUT_SECONDS)), UNREACHABLE)
    assert late.status.reason == "Retrying" and late.actions == (CreateRayJob(2),)
    assert ("Warning", "AttemptNotStopped") in [(e.type, e.reason) for e in late.events]


def test_failing_and_deadlines_wait_for_the_stop_too():
    exhausted = observe(status(Phase.RUNNING, failed_attempts=3), RETRYABLE, rj=FAILED_RJ)
    d = decide(exhausted, RUNNING)
    assert (d.status.phase, d.status.reason) == (Phase.RUNNING, "StoppingAttempt")
    assert "RetriesExhausted" not in d.status.message and "before failing" in d.status.message
    assert decide(exhausted, STOPPED).status.reason == "RetriesExhausted"

    deadline = observe(status(Phase.RUNNING), {"activeDeadlineSeconds": 30}, rj=rayjob("RUNNING"))
    d = decide(deadline, RUNNING)
    assert d.status.reason == "StoppingAttempt" and d.actions == (StopViaDashboard(f"{CLUSTER}-a1"),)
    d = decide(deadline, STOPPED)
    assert d.status.reason == "DeadlineExceeded" and d.actions == (StopRayJob(f"{CLUSTER}-a1"),)


def test_a_provisioning_cluster_never_ran_the_job():
    """KubeRay submits only to a ready cluster: nothing to stop, no dashboard to ask."""
    d = derive(observe(status(Phase.PROVISIONING), {"startupDeadlineSeconds": 30}, cluster=PROVISIONING,
                       rj=rayjob("", "Initializing")))
    assert not d.wants_ray_job_state and d.status.reason == "StartupDeadlineExceeded"


def test_rays_own_success_wins_over_a_failed_rayjob():
    d = decide(observe(status(Phase.RUNNING), RETRYABLE, rj=FAILED_RJ), RayJobState(status="SUCCEEDED"))
    assert (d.status.phase, d.status.reason) == (Phase.SUCCEEDED, "Succeeded") and not d.actions


def test_suspend_stops_the_ray_job_first():
    obs = observe(status(Phase.RUNNING), {"suspend": True}, rj=rayjob("RUNNING"))
    d = decide(obs, RUNNING)
    assert (d.status.phase, d.status.reason) == (Phase.RUNNING, "StoppingAttempt")
    assert d.actions == (StopViaDashboard(f"{CLUSTER}-a1"),)
    d = decide(obs, STOPPED)
    assert d.status.phase == Phase.SUSPENDED
    assert d.actions == (StopRayJob(f"{CLUSTER}-a1"), SuspendCluster(True))


# --- attempts past what a RayJob name has room for -----------------------------------------------

def test_no_attempt_past_the_last_name():
    d = decide(observe(status(Phase.RUNNING, attempt=99, failed_attempts=0), RETRYABLE, rj=FAILED_RJ))
    assert (d.status.phase, d.status.reason) == (Phase.FAILED, "AttemptsExhausted")
    assert "attempt 100" in d.status.message and d.status.attempt == 99 and not d.actions

    resumed = derive(observe(status(Phase.SUSPENDED, attempt=99), {}, cluster=SUSPENDED))
    assert (resumed.status.phase, resumed.status.reason) == (Phase.FAILED, "AttemptsExhausted")
    assert not resumed.actions

    edited = derive(observe(status(Phase.RUNNING, attempt=150), {}, rj=None))
    assert edited.status.reason == "AttemptsExhausted" and not edited.actions


# --- Kueue ----------------------------------------------------------------------------------------

def test_suspend_under_kueue_deletes_the_cluster_and_resume_recreates_it():
    d = decide(observe(status(Phase.RUNNING), {"suspend": True}, rj=rayjob("RUNNING"), kueue=True), STOPPED)
    assert d.status.phase == Phase.SUSPENDED and d.status.reason == "Suspending"
    assert d.actions == (StopRayJob(f"{CLUSTER}-a1"), DeleteCluster(CLUSTER))
    assert "deleted" in d.status.message
    # Being deleted: not asked twice. Gone: suspended for good.
    deleting = {**READY, "metadata": {"deletionTimestamp": T0}}
    d = decide(observe(d.status, {"suspend": True}, cluster=deleting, kueue=True))
    assert d.actions == () and d.status.reason == "Suspending"
    d = decide(observe(d.status, {"suspend": True}, cluster=None, kueue=True))
    assert d.actions == () and d.status.reason == "Suspended"
    assert cond(d.status, "ClusterReady").reason == "NoCluster"
    # Kueue admitted a cluster again while suspended (drift): deleted again.
    d2 = decide(observe(d.status, {"suspend": True}, cluster=READY, kueue=True))
    assert d2.actions == (DeleteCluster(CLUSTER),) and d2.status.reason == "Suspending"
    # Resume: a new cluster (queued in Kueue again) and the next attempt.
    r = decide(observe(d.status, {}, cluster=None, kueue=True))
    assert r.actions == (CreateCluster(), CreateRayJob(2)) and r.status.phase == Phase.PROVISIONING


def test_kueue_owns_admission():
    body = copy.deepcopy(BASE_JOB)  # carries kueue.x-k8s.io/queue-name: gpu-batch
    body["metadata"]["uid"] = "u1"
    queued = Observed(job=parse_job(body, target="cluster"), old=status(Phase.PROVISIONING), now=NOW,
                      cluster_name=CLUSTER, cluster=SUSPENDED, rayjob=rayjob("", "Initializing"),
                      rayjob_name=f"{CLUSTER}-a1")
    d = derive(queued)
    assert d.actions == ()  # never unsuspend a cluster Kueue has not admitted
    assert cond(d.status, "ClusterReady").reason == "WaitingForAdmission"
    assert "gpu-batch" in d.status.message


def test_pod_problems_surface_in_cluster_ready_and_an_event():
    problems = ("pod x-head: ImagePullBackOff: back-off pulling image",)
    d = derive(observe(status(Phase.PROVISIONING), cluster=PROVISIONING, rj=rayjob("", "Initializing"),
                       pod_problems=problems))
    assert cond(d.status, "ClusterReady").reason == "PodProblem"
    assert "ImagePullBackOff" in d.status.message
    assert [e.reason for e in d.events] == ["PodProblem"]
    # Same problem again: no second Event.
    again = derive(observe(d.status, cluster=PROVISIONING, rj=rayjob("", "Initializing"), pod_problems=problems))
    assert again.events == ()


def test_invalid_spec():
    obs = Observed(job=None, old=ExtractionJobStatus(), now=NOW, generation=1,
                   spec_errors=("spec.sink.qdrant.url: is required on Kubernetes",))
    d = derive(obs)
    assert (d.status.phase, d.status.reason) == (Phase.FAILED, "InvalidSpec")
    assert "spec.sink.qdrant.url" in d.status.message and d.actions == ()
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "InvalidSpec")]


def test_transition_times_hold_while_status_holds():
    first = derive(observe(status(Phase.PROVISIONING), rj=rayjob("RUNNING"))).status
    later = derive(observe(first, rj=rayjob("RUNNING"), now=NOW + timedelta(minutes=5))).status
    assert cond(later, "Progressing").last_transition_time == cond(first, "Progressing").last_transition_time
    assert later.to_wire() == first.to_wire()  # nothing changed: no patch


def test_progress_rates_and_no_change_no_patch():
    old = status(Phase.RUNNING, progress=Progress(files_total=100, files_done=10, summary="10/100", percent=10,
                                                   last_update_time=T0))
    snap = reading(100, files_done=40, items={"text": 600}, points_written=600)
    st = derive(observe(old, rj=rayjob("RUNNING"), progress=snap)).status
    p = st.progress
    assert (p.summary, p.percent, p.items_per_second, p.eta_seconds) == ("40/100", 40, 10.0, 120)
    assert p.last_update_time == "2026-11-22T12:00:00Z"
    same = derive(observe(st, rj=rayjob("RUNNING"), progress=snap, now=NOW + timedelta(seconds=30))).status
    assert same.progress == p


def test_listing_in_progress_then_complete_is_a_change_worth_a_patch():
    """progress.listing follows the report's listing_complete; its flip alone (no count moved) updates the
    status, and a reading that changes nothing after it patches nothing."""
    growing = reading(100, files_done=40)
    st = derive(observe(status(Phase.RUNNING), rj=rayjob("RUNNING"), progress=growing)).status
    assert st.progress.listing == "InProgress"
    assert st.to_wire()["progress"]["listing"] == "InProgress"
    listed = dataclasses.replace(growing, listing_complete=True)
    later = NOW + timedelta(seconds=30)
    done = derive(observe(st, rj=rayjob("RUNNING"), progress=listed, now=later)).status
    assert (done.progress.listing, done.progress.files_total) == ("Complete", 100)
    assert done.progress.last_update_time == "2026-11-22T12:00:30Z"
    again = derive(observe(done, rj=rayjob("RUNNING"), progress=listed, now=later + timedelta(seconds=30))).status
    assert again.progress == done.progress
    assert derive(observe(status(Phase.RUNNING), rj=rayjob("RUNNING"))).status.progress.listing is None


def test_merge_patch_only_what_changed():
    old = {"phase": "Running", "progress": {"filesDone": 1, "filesTotal": 9}, "dashboardURL": "x",
           "conditions": [{"type": "Ready"}]}
    new = {"phase": "Running", "progress": {"filesDone": 2, "filesTotal": 9}, "conditions": [{"type": "Ready"}]}
    assert merge_patch(old, new) == {"progress": {"filesDone": 2}, "dashboardURL": None}
    assert merge_patch(new, new) == {}
    assert merge_patch({}, new) == new


def test_pod_problems_picks_stuck_pods_only():
    pods = [
        {"metadata": {"name": "h"}, "status": {"containerStatuses": [
            {"state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}]}},
        {"metadata": {"name": "w"}, "status": {"conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "no GPU"}]}},
        {"metadata": {"name": "ok"}, "status": {"containerStatuses": [
            {"state": {"waiting": {"reason": "ContainerCreating"}}}]}},
    ]
    assert pod_problems(pods) == ["pod h: ErrImagePull: not found", "pod w: Unschedulable: no GPU"]


# --- after a failure: the debug record, then the RayCluster kept (cleanup.onFailure) ---------------

WORKERS = {"workerGroupSpecs": [{"groupName": "cpu", "replicas": 2, "minReplicas": 1, "maxReplicas": 4},
                                {"groupName": "gpu", "replicas": 1, "minReplicas": 0, "maxReplicas": 2}]}
KEPT_READY = {"spec": WORKERS, "status": {"state": "ready"}}
SCALED = {"spec": {"workerGroupSpecs": [{**g, "replicas": 0, "minReplicas": 0} for g in WORKERS["workerGroupSpecs"]]},
          "status": {"state": "ready"}}
DEBUG_CM = {"metadata": {"name": "campaign-debug", "ownerReferences": [{"uid": "u1"}],
                         "annotations": {"prism.dev/failed-files": "2", "prism.dev/saved-time": T0,
                                         "prism.dev/cut": ""}}}
SAVED = {"debug_read": True, "debug_config_map": DEBUG_CM}


def failed(completed: datetime = NOW - timedelta(seconds=60), **kw) -> ExtractionJobStatus:
    return status(Phase.FAILED, completion_time=completed.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  reason="TooManyFailedFiles", **kw)


def settle(obs: Observed):
    """derive as the reconciler runs it when the ConfigMap read is asked for (here: as `obs` says)."""
    decision = derive(dataclasses.replace(obs, debug_read=False, debug_config_map=None))
    assert decision.wants_debug_config_map == (obs.old.debug is None)
    return derive(obs) if decision.wants_debug_config_map else decision


def kinds(decision) -> list[type]:
    return [type(a) for a in decision.actions]


def test_a_failed_job_first_saves_its_debug_record_and_the_ttl_waits_for_it():
    spec = {"ttlSecondsAfterFinished": 0}
    first = derive(observe(failed(), spec))
    assert first.wants_debug_config_map and first.actions == ()  # not without knowing whether it is saved
    missing = derive(observe(failed(), spec, debug_read=True))
    assert missing.actions == (SaveDebug(f"{CLUSTER}-a1", "campaign-debug"),)  # no DeleteCluster yet
    assert missing.status.debug is None and missing.events == ()
    saved = derive(observe(failed(), spec, **SAVED))
    assert saved.status.debug.config_map == "campaign-debug" and saved.status.debug.failed_files == 2
    assert saved.actions == (DeleteCluster(CLUSTER),)
    assert [e.reason for e in saved.events] == ["DebugSaved", "ClusterDeleted"]
    assert "kubectl get configmap campaign-debug" in saved.events[0].message
    # Recorded: never asked again.
    after = derive(observe(saved.status, spec, cluster=None))
    assert not after.wants_debug_config_map and after.status.debug == saved.status.debug


def test_saving_is_bounded_it_never_holds_the_ttl_for_ever():
    spec = {"ttlSecondsAfterFinished": 0}
    down = DebugSaveFailure("http://c-head-svc.media.svc:8265/api/jobs/x/logs: ClientConnectorError")
    young = derive(observe(failed(), spec, debug_read=True, debug_save_failure=down))
    assert kinds(young) == [SaveDebug]  # tried again next reconcile
    old = failed(NOW - timedelta(seconds=DEBUG_SAVE_TIMEOUT_SECONDS))
    late = derive(observe(old, spec, debug_read=True, debug_save_failure=down))
    assert late.actions == (DeleteCluster(CLUSTER),)
    assert late.status.debug.config_map is None and "ClientConnectorError" in late.status.debug.message
    assert ("Warning", "DebugNotSaved") in [(e.type, e.reason) for e in late.events]
    # Ray has no such job (a new head): no point in trying again.
    gone = DebugSaveFailure("Ray has no job x (HTTP 404)", final=True)
    d = derive(observe(failed(), spec, debug_read=True, debug_save_failure=gone))
    assert d.actions == (DeleteCluster(CLUSTER),) and "HTTP 404" in d.status.debug.message
    # No cluster left to read from: given up at once.
    d = derive(observe(failed(), spec, cluster=None, debug_read=True))
    assert d.status.debug.message.startswith("nothing saved: RayCluster") and d.actions == ()


def test_a_succeeded_job_with_failed_files_saves_its_record_one_without_does_not():
    done = status(Phase.SUCCEEDED, completion_time=T0, reason="Succeeded")
    assert not derive(observe(done, {"ttlSecondsAfterFinished": 0})).wants_debug_config_map
    lossy = status(Phase.SUCCEEDED, completion_time=T0, reason="Succeeded", failures=Failures(count=1))
    assert kinds(settle(observe(lossy, {"ttlSecondsAfterFinished": 0}, debug_read=True))) == [SaveDebug]


def test_keep_head_scales_the_workers_to_zero_and_outlives_ttl_seconds_after_finished():
    spec = {"ttlSecondsAfterFinished": 0, "cleanup": {"onFailure": {"keep": "Head", "ttlSeconds": 3600}}}
    d = settle(observe(failed(), spec, cluster=KEPT_READY, **SAVED))
    assert d.actions == (ScaleWorkersToZero(CLUSTER, ("cpu", "gpu")),)  # not deleted: TTL 0 is long past
    ready = cond(d.status, "ClusterReady")
    assert ready.reason == "KeptForDebugging" and "until 2026-11-22T12:59:00Z" in ready.message
    assert [e.reason for e in d.events] == ["DebugSaved", "KeptForDebugging"]
    # Scaled: nothing more to do, no second Event, until ttlSeconds after the failure.
    again = settle(observe(d.status, spec, cluster=SCALED))
    assert again.actions == () and again.events == ()
    assert cond(again.status, "ClusterReady").reason == "KeptForDebugging"
    due = settle(observe(d.status, spec, cluster=SCALED, now=NOW + timedelta(seconds=3540)))
    assert due.actions == (DeleteCluster(CLUSTER),)
    assert cond(due.status, "ClusterReady").reason == "ClusterDeleted"
    assert "cleanup.onFailure.ttlSeconds" in cond(due.status, "ClusterReady").message


def test_keep_cluster_keeps_it_whole_and_the_deletion_waits_for_the_debug_record():
    spec = {"ttlSecondsAfterFinished": 0, "cleanup": {"onFailure": {"keep": "Cluster", "ttlSeconds": 30}}}
    unsaved = derive(observe(failed(), spec, cluster=KEPT_READY, debug_read=True))
    assert unsaved.actions == (SaveDebug(f"{CLUSTER}-a1", "campaign-debug"),)  # ttlSeconds due, record not
    assert cond(unsaved.status, "ClusterReady").reason == "KeptForDebugging"
    saved = derive(observe(failed(), spec, cluster=KEPT_READY, **SAVED))
    assert saved.actions == (DeleteCluster(CLUSTER),)


def test_kept_with_no_end_settles_and_a_succeeded_job_is_not_kept():
    spec = {"ttlSecondsAfterFinished": 0, "cleanup": {"onFailure": {"keep": "Cluster"}}}
    d = settle(observe(failed(), spec, cluster=KEPT_READY, **SAVED))
    assert d.actions == () and cond(d.status, "ClusterReady").reason == "KeptUntilJobDeleted"
    assert "until the ExtractionJob is deleted" in cond(d.status, "ClusterReady").message
    done = status(Phase.SUCCEEDED, completion_time=T0, reason="Succeeded")
    assert derive(observe(done, spec, cluster=KEPT_READY)).actions == (DeleteCluster(CLUSTER),)


def test_keep_none_is_todays_ttl_after_the_debug_record():
    spec = {"ttlSecondsAfterFinished": 30, "cleanup": {"onFailure": {"keep": "None"}}}
    d = settle(observe(failed(), spec, cluster=KEPT_READY, **SAVED))
    assert d.actions == (DeleteCluster(CLUSTER),)
    assert cond(d.status, "ClusterReady").reason == "ClusterDeleted"
    assert "ttlSecondsAfterFinished" in cond(d.status, "ClusterReady").message
    not_yet = settle(observe(failed(), {**spec, "ttlSecondsAfterFinished": 120}, cluster=KEPT_READY, **SAVED))
    assert not_yet.actions == ()


def test_an_existing_cluster_is_never_scaled_nor_deleted():
    spec = {"cluster": {"existing": "shared"}, "ttlSecondsAfterFinished": 0}
    with pytest.raises(Exception, match="cleanup.onFailure.keep"):
        job(**{**spec, "cleanup": {"onFailure": {"keep": "Head"}}})
    unsaved = derive(observe(failed(), spec, cluster=KEPT_READY, rj=rayjob("FAILED", "Complete"), debug_read=True))
    assert unsaved.actions == (SaveDebug(f"{CLUSTER}-a1", "campaign-debug"),)  # the log is saved all the same
    d = derive(observe(failed(), spec, cluster=KEPT_READY, rj=rayjob("FAILED", "Complete"), **SAVED))
    assert d.actions == (StopRayJob(f"{CLUSTER}-a1"),)  # only the RayJob, as today
    assert cond(d.status, "ClusterReady").reason == "RayJobDeleted"


def test_a_config_map_of_a_deleted_namesake_is_not_this_jobs_record():
    stale = {**DEBUG_CM, "metadata": {**DEBUG_CM["metadata"], "ownerReferences": [{"uid": "an-older-job"}]}}
    d = derive(observe(failed(), {}, debug_read=True, debug_config_map=stale))
    assert kinds(d) == [SaveDebug] and d.status.debug is None


def test_the_timer_runs_while_a_finished_job_has_cleanup_due():
    saved = DebugRecord(config_map="campaign-debug", failed_files=2)
    no_ttl: dict = {}
    assert cleanup_pending(no_ttl, failed())  # the debug record is due, TTL or not
    assert not cleanup_pending(no_ttl, failed(debug=saved))
    assert not cleanup_pending(no_ttl, status(Phase.SUCCEEDED, completion_time=T0))
    assert cleanup_pending(no_ttl, status(Phase.SUCCEEDED, completion_time=T0, failures=Failures(count=1)))
    keep = {"cleanup": {"onFailure": {"keep": "Head", "ttlSeconds": 60}}}
    assert cleanup_pending(keep, failed(debug=saved))  # kept on a clock without ttlSecondsAfterFinished
    kept_for_good = failed(debug=saved, conditions=[Condition(type="ClusterReady", status="True",
                                                              reason="KeptUntilJobDeleted")])
    assert not cleanup_pending(keep, kept_for_good)
    assert cleanup_pending({"ttlSecondsAfterFinished": 10}, status(Phase.SUCCEEDED, completion_time=T0))
    refused = status(Phase.FAILED, attempt=0, reason="InvalidSpec")
    assert not cleanup_pending({"ttlSecondsAfterFinished": 10}, refused)
