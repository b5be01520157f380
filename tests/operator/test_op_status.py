"""Status derivation, table-driven over the RayCluster/RayJob states that matter; the status patch;
pod problems; progress parsing."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from prism_operator.builders.raycluster import owned_cluster_name
from prism_operator.progress_client import ProgressFormatError, ProgressSnapshot, parse_progress
from prism_operator.status.derive import derive
from prism_operator.status.model import (
    CreateCluster,
    CreateRayJob,
    DeleteCluster,
    Observed,
    StopRayJob,
    SuspendCluster,
)
from prism_operator.status.patch import merge_patch
from prism_operator.status.pods import pod_problems
from prism_pipeline.spec import Condition, ExtractionJobStatus, Phase, Progress, parse_job

from .conftest import BASE_JOB, progress_text

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
T0 = "2026-11-22T11:59:00Z"  # one minute before NOW
READY = {"spec": {}, "status": {"state": "ready"}}
PROVISIONING = {"spec": {}, "status": {}}
SUSPENDED = {"spec": {"suspend": True}, "status": {"state": "suspended"}}


def job(**spec):
    body = copy.deepcopy(BASE_JOB)
    body["metadata"]["uid"] = "u1"
    body["metadata"].pop("labels")  # not queued in Kueue (see test_kueue_owns_admission)
    body["spec"].update(spec)
    return parse_job(body, target="cluster")


CLUSTER = owned_cluster_name(job())


def rayjob(job_status: str, deployment: str = "Running", message: str = "") -> dict:
    return {"status": {"jobStatus": job_status, "jobDeploymentStatus": deployment, "message": message}}


def status(phase: Phase, attempt: int = 1, **kw) -> ExtractionJobStatus:
    return ExtractionJobStatus(phase=phase, attempt=attempt, start_time=T0, **kw)


def observe(old: ExtractionJobStatus, spec: dict | None = None, cluster=READY, rj=None, now=NOW, **kw) -> Observed:
    return Observed(job=job(**(spec or {})), old=old, now=now, generation=3, cluster_name=CLUSTER,
                    owns_cluster=not (spec or {}).get("cluster", {}).get("existing"), cluster=cluster,
                    rayjob=rj, rayjob_name=f"{CLUSTER}-a{old.attempt}" if old.attempt else "", **kw)


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
    ("submission failed (deployment Failed) with a retry left",
     status(Phase.PROVISIONING), {"retries": {"limit": 1}}, READY, rayjob("", "Failed", "submitter crashed"),
     Phase.PROVISIONING, "Retrying", [CreateRayJob(2)]),
    ("failed, retries used up",
     status(Phase.RUNNING, attempt=2, failed_attempts=1), {"retries": {"limit": 1}}, READY,
     rayjob("FAILED", "Complete", "OOM"), Phase.FAILED, "RetriesExhausted", []),
    ("failed, no retries configured",
     status(Phase.RUNNING), {"retries": {"limit": 0}}, READY, rayjob("STOPPED", "Complete"),
     Phase.FAILED, "RayJobFailed", []),
    ("suspend a running job",
     status(Phase.RUNNING), {"suspend": True}, READY, rayjob("RUNNING"), Phase.SUSPENDED, "Suspended",
     [StopRayJob(f"{CLUSTER}-a1"), SuspendCluster(True)]),
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
    decision = derive(observe(old, spec, cluster=cluster, rj=rj))
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
    d = derive(observe(status(Phase.RUNNING), {"retries": {"limit": 2}}, rj=rayjob("FAILED", "Complete", "OOM")))
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


def test_too_many_failed_files_fails_without_retry():
    snap = ProgressSnapshot(files_total=10, files_done=5, files_failed=5)
    obs = observe(status(Phase.RUNNING), {"retries": {"limit": 3}, "failurePolicy": {"maxFailedFileRatio": 0.1}},
                  rj=rayjob("FAILED", "Complete", "too many failures"), progress=snap)
    d = derive(obs)
    assert d.status.phase == Phase.FAILED and d.status.reason == "TooManyFailedFiles"
    assert "5 of 10 files failed" in d.status.message and not d.actions


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
    snap = ProgressSnapshot(files_total=100, files_done=40, items={"text": 600}, points_written=600)
    st = derive(observe(old, rj=rayjob("RUNNING"), progress=snap)).status
    p = st.progress
    assert (p.summary, p.percent, p.items_per_second, p.eta_seconds) == ("40/100", 40, 10.0, 120)
    assert p.last_update_time == "2026-11-22T12:00:00Z"
    same = derive(observe(st, rj=rayjob("RUNNING"), progress=snap, now=NOW + timedelta(seconds=30))).status
    assert same.progress == p


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


def test_parse_progress_reads_sample_names():
    text = progress_text(total=7, done=3, failed=1, skipped=2, points=30, items={"text": 12, "faces": 4},
                         finished=True, samples=[("s3://b/x.pdf", "decode", 'bad "xref"')])
    snap = parse_progress(text)
    assert (snap.files_total, snap.files_done, snap.files_failed, snap.files_skipped) == (7, 3, 1, 2)
    assert snap.items == {"text": 12, "faces": 4} and snap.points_written == 30
    assert snap.failure_samples == (("s3://b/x.pdf", "decode", 'bad "xref"'),)
    assert snap.finished and snap.cpu_seconds == 12.5
    with pytest.raises(ProgressFormatError):
        parse_progress("prism_files_total{ 3\n")
