"""An ExtractionJob's life on the real control plane: the real operator (as its ServiceAccount), the
real KubeRay controller submitting to a real Ray head over HTTP, the real pipeline, the real garbage
collector."""

from __future__ import annotations

import calendar
import time

from e2e.support.waiting import wait_for
from prism_api.conventions import ATTEMPT_LABEL

from .conftest import apply_job, children, condition, events, job_manifest, job_status, wait_phase

PACE = "python: prism_e2e.extractors:Pace"
FAIL_FIRST = "python: prism_e2e.extractors:FailFirstAttempt"


def paced(seconds_per_item: float) -> list[dict]:
    """A plug-in that sleeps per item: keeps a job running while a test acts on it."""
    return [{"name": "pace", "kind": PACE, "batchSize": 1, "options": {"secondsPerItem": seconds_per_item}}]


def one(kubectl, kind: str) -> dict:
    items = children(kubectl, kind)
    assert len(items) == 1, [i["metadata"]["name"] for i in items]
    return items[0]


def ray_job_status(ray, submission_id: str) -> str | None:
    info = ray.job(submission_id)
    return info and info.get("status")


def test_job_runs_the_real_pipeline_and_succeeds(kubectl, operator, ray, media_dir, qdrant):
    apply_job(kubectl, job_manifest("docs", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url))
    status = wait_phase(kubectl, "docs", {"Succeeded", "Failed"}, timeout=300)
    rayjob = one(kubectl, "rayjobs")
    assert status["phase"] == "Succeeded", (status, ray.logs(rayjob["spec"]["jobId"])[-3000:])

    cluster = one(kubectl, "rayclusters")
    owner = cluster["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ExtractionJob" and owner["controller"] and owner["blockOwnerDeletion"]
    assert rayjob["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert rayjob["spec"]["submissionMode"] == "HTTPMode"
    assert rayjob["status"]["jobStatus"] == "SUCCEEDED"
    assert ray_job_status(ray, rayjob["spec"]["jobId"]) == "SUCCEEDED"

    progress = status["progress"]
    assert progress["filesTotal"] == 4 and progress["filesDone"] == 4, progress
    assert progress["pointsWritten"] >= 4 and progress["percent"] == 100, progress
    assert status["observedGeneration"] == 1 and status["attempt"] == 1
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "ClusterReady")["status"] == "True"
    reasons = [e["reason"] for e in events(kubectl, "docs")]
    assert "Succeeded" in reasons, reasons
    assert qdrant.local.count("docs").count == progress["pointsWritten"]
    printed = kubectl.run("get", "xj", "docs").stdout
    assert "Succeeded" in printed and "4/4" in printed, printed


def test_delete_stops_the_ray_job_and_the_garbage_collector_removes_children(kubectl, operator, ray, media_dir,
                                                                              qdrant):
    apply_job(kubectl, job_manifest("gone", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(30)))
    wait_phase(kubectl, "gone", "Running", timeout=180)
    submission = one(kubectl, "rayjobs")["spec"]["jobId"]
    wait_for("the Ray job running", lambda: ray_job_status(ray, submission) == "RUNNING", 60)

    started = time.monotonic()
    kubectl.run("delete", "extractionjob", "gone", "--timeout=60s")
    took = time.monotonic() - started
    assert took < 30, f"delete took {took:.0f}s (the finalizer waited on a timer?)"
    wait_for("the Ray job stopped", lambda: ray_job_status(ray, submission) in ("STOPPED", "FAILED"), 60)
    wait_for("RayCluster and RayJob garbage-collected",
             lambda: not children(kubectl, "rayclusters") and not children(kubectl, "rayjobs"), 90)


def test_operator_restart_creates_no_duplicate_children(kubectl, control_plane, operator, ray, media_dir, qdrant,
                                                        tmp_path):
    from .conftest import OperatorProcess

    apply_job(kubectl, job_manifest("restart", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(20)))
    wait_phase(kubectl, "restart", "Running", timeout=180)
    before = {(i["kind"], i["metadata"]["uid"]) for k in ("rayclusters", "rayjobs") for i in children(kubectl, k)}
    assert operator.stop() == 0
    second = OperatorProcess(control_plane, tmp_path).start()
    try:
        # Several reconciles of the resumed job.
        time.sleep(8)
        after = {(i["kind"], i["metadata"]["uid"]) for k in ("rayclusters", "rayjobs") for i in children(kubectl, k)}
        assert after == before
        assert job_status(kubectl, "restart")["phase"] == "Running"
        kubectl.run("delete", "extractionjob", "restart", "--timeout=60s")  # the second operator's finalizer
    finally:
        second.stop()
        errors = second.error_lines()
        assert not errors, errors


def test_a_failed_attempt_is_retried_on_the_same_cluster(kubectl, operator, ray, media_dir, qdrant):
    extractors = [{"name": "flaky", "kind": FAIL_FIRST}]
    apply_job(kubectl, job_manifest("flaky", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=extractors, retries={"limit": 2}))
    status = wait_phase(kubectl, "flaky", {"Succeeded", "Failed"}, timeout=360)
    assert status["phase"] == "Succeeded", status
    assert status["attempt"] == 2 and status["failedAttempts"] == 1, status
    assert len(children(kubectl, "rayclusters")) == 1
    jobs = sorted(children(kubectl, "rayjobs"), key=lambda j: j["metadata"]["name"])
    assert [j["metadata"]["labels"][ATTEMPT_LABEL] for j in jobs] == ["1", "2"]
    assert {j["spec"]["clusterSelector"]["ray.io/cluster"] for j in jobs} == {status["rayCluster"]}
    assert "AttemptFailed" in [e["reason"] for e in events(kubectl, "flaky")]


def test_a_retry_first_stops_the_attempt_kuberay_gave_up_on(kubectl, operator, ray, media_dir, qdrant):
    """KubeRay can mark a RayJob Failed while its Ray job still runs (submitter out of retries, the
    dashboard unreachable for 300 s) and never stops it in clusterSelector mode. Here its verdict is
    written into the RayJob's status by hand (waiting 300 s for the real trigger is too long); the
    Ray job, the operator and KubeRay are real. The next attempt must start only once the old Ray
    job is stopped: two drivers must never write one collection."""
    apply_job(kubectl, job_manifest("fenced", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(30), retries={"limit": 1}))
    wait_phase(kubectl, "fenced", "Running", timeout=180)
    first = one(kubectl, "rayjobs")
    submission = first["spec"]["jobId"]
    wait_for("attempt 1's Ray job running", lambda: ray_job_status(ray, submission) == "RUNNING", 60)

    kubectl.run("patch", "rayjob", first["metadata"]["name"], "--subresource=status", "--type=merge", "-p",
                '{"status": {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", '
                '"reason": "JobStatusCheckTimeoutExceeded", "message": "dashboard unreachable for 300s"}}')

    def second_attempt():
        jobs = {j["metadata"]["labels"][ATTEMPT_LABEL]: j for j in children(kubectl, "rayjobs")}
        return jobs.get("2")
    second = wait_for("attempt 2's RayJob", second_attempt, 120)
    info = ray.job(submission)
    assert info["status"] == "STOPPED", info
    created = calendar.timegm(time.strptime(second["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ"))
    assert info["end_time"] / 1000 <= created + 1, "attempt 2 was created before attempt 1's Ray job stopped"
    status = job_status(kubectl, "fenced")
    assert status["attempt"] == 2 and status["reason"] in ("Retrying", "Submitting", "Running"), status


def test_too_many_failed_files_is_told_by_the_pipeline_and_not_retried(kubectl, operator, ray, media_dir, qdrant,
                                                                       tmp_path):
    """The pipeline's own verdict (its outcome line and endpoint) names the reason; a retry would
    fail the same way, so there is none."""
    media = tmp_path / "media"
    media.mkdir()
    for i in range(2):
        (media / f"ok-{i}.txt").write_text(f"good text {i}\n")
    for i in range(2):
        (media / f"broken-{i}.pdf").write_bytes(b"%PDF-1.4 this is not a pdf at all" * 4)
    apply_job(kubectl, job_manifest("lossy", kubectl.namespace, media=media, qdrant_url=qdrant.url,
                                    extractors=paced(0), retries={"limit": 2},
                                    failurePolicy={"maxFailedFileRatio": 0.2}))
    status = wait_phase(kubectl, "lossy", {"Succeeded", "Failed"}, timeout=240)
    assert status["phase"] == "Failed" and status["reason"] == "TooManyFailedFiles", status
    assert status["attempt"] == 1 and len(children(kubectl, "rayjobs")) == 1, status
    assert status["failures"]["count"] == 2, status["failures"]
    assert {s["uri"].rsplit("/", 1)[-1] for s in status["failures"]["samples"]} == {"broken-0.pdf", "broken-1.pdf"}


def test_an_entrypoint_too_large_for_one_argument_fails_before_any_child(kubectl, operator):
    import random
    import string

    noise = "".join(random.choices(string.ascii_letters + string.digits, k=200 * 1024))
    # One extractor's options are bounded (prism_api.extractor_options): the noise is spread over four.
    extractors = [{"name": f"big{i}", "kind": PACE, "options": {"secondsPerItem": 0, "blob": noise[i::4]}}
                  for i in range(4)]
    apply_job(kubectl, job_manifest("huge", kubectl.namespace, extractors=extractors))
    status = wait_phase(kubectl, "huge", "Failed", timeout=60)
    assert status["reason"] == "InvalidSpec" and "entrypoint" in status["message"], status
    assert children(kubectl, "rayclusters") == [] and children(kubectl, "rayjobs") == []


def test_a_job_on_a_shared_cluster_never_reads_another_jobs_progress(kubectl, operator, ray, media_dir, qdrant):
    """Two jobs on one RayCluster (`cluster.existing`): the first driver holds the head's progress
    port, so the second job's endpoint is the first job's. Its status must not show those counts."""
    apply_job(kubectl, job_manifest("owner", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                                    extractors=paced(1)))
    wait_phase(kubectl, "owner", "Running", timeout=180)
    wait_for("the owner's progress", lambda: (job_status(kubectl, "owner").get("progress") or {}).get("filesTotal"),
             90)
    shared = one(kubectl, "rayclusters")["metadata"]["name"]
    guest = job_manifest("guest", kubectl.namespace, media=media_dir, qdrant_url=qdrant.url,
                         extractors=paced(30))
    guest["spec"]["cluster"] = {"existing": shared}
    apply_job(kubectl, guest)
    wait_phase(kubectl, "guest", "Running", timeout=180)
    time.sleep(6)  # several progress reads while both drivers run
    progress = job_status(kubectl, "guest").get("progress") or {}
    assert not progress.get("filesTotal"), f"the guest job shows the owner's counters: {progress}"
