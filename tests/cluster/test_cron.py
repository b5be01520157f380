"""An ExtractionCronJob on the real control plane: the real operator (as its ServiceAccount, so RBAC
and OwnerReferencesPermissionEnforcement apply) creates a run each minute; the runs are real
ExtractionJobs through KubeRay, the Ray head and the pipeline; the second run processes only the new
file (incremental); history limits and the garbage collector remove old runs."""

from __future__ import annotations

import calendar
import time

import yaml

from e2e.support.waiting import wait_for
from prism_api.cron_job import CRON_LABEL, SCHEDULED_TIME_ANNOTATION

from .conftest import events, job_manifest, job_status, wait_phase


def runs(kubectl, cron: str) -> list[dict]:
    items = kubectl.json("get", "extractionjobs", "-l", f"{CRON_LABEL}={cron}").get("items", [])
    return sorted(items, key=lambda j: j["metadata"]["name"])


def cron_status(kubectl, name: str) -> dict:
    return (kubectl.get("extractioncronjob", name) or {}).get("status") or {}


def test_a_schedule_runs_each_minute_and_each_run_processes_only_new_files(kubectl, operator, ray, qdrant, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    for i in range(2):
        (media / f"note-{i}.txt").write_text(f"Note {i}: the tide comes in at dawn.\n")
    template = job_manifest("nightly", kubectl.namespace, media=media, qdrant_url=qdrant.url,
                            ttlSecondsAfterFinished=0)["spec"]
    cron = {"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionCronJob",
            "metadata": {"name": "nightly", "namespace": kubectl.namespace},
            "spec": {"schedule": "* * * * *", "successfulJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {"labels": {"team": "search"}}, "spec": template}}}
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(cron))

    status = wait_for("the schedule's next time", lambda: cron_status(kubectl, "nightly").get("nextScheduleTime"), 30)
    first = wait_for("the first run", lambda: runs(kubectl, "nightly") or None, 90)[0]
    name = first["metadata"]["name"]
    assert first["metadata"]["labels"]["team"] == "search"
    owner = first["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ExtractionCronJob" and owner["controller"] and owner["blockOwnerDeletion"]
    scheduled = first["metadata"]["annotations"][SCHEDULED_TIME_ANNOTATION]
    minutes = calendar.timegm(time.strptime(scheduled, "%Y-%m-%dT%H:%M:%SZ")) // 60
    assert scheduled.endswith(":00Z") and name == f"nightly-{minutes}", (name, scheduled)
    done = wait_phase(kubectl, name, {"Succeeded", "Failed"}, timeout=240)
    assert done["phase"] == "Succeeded" and done["progress"]["filesDone"] == 2, done

    (media / "note-new.txt").write_text("A new note: the harbour opens at nine.\n")
    second = wait_for("the next minute's run", lambda: next(
        (j for j in runs(kubectl, "nightly") if j["metadata"]["name"] != name), None), 100)
    again = wait_phase(kubectl, second["metadata"]["name"], {"Succeeded", "Failed"}, timeout=240)
    assert again["phase"] == "Succeeded", again
    assert (again["progress"]["filesDone"], again["progress"]["filesSkipped"]) == (1, 2), again["progress"]

    # successfulJobsHistoryLimit 1: the first run goes once the second has succeeded.
    wait_for("the first run deleted", lambda: name not in [j["metadata"]["name"] for j in runs(kubectl, "nightly")], 60)
    status = cron_status(kubectl, "nightly")
    assert status["lastSuccessfulTime"] >= again["completionTime"] and status["lastScheduleTime"] >= scheduled
    assert status["nextScheduleTime"] > status["lastScheduleTime"] and status["reason"] == "Scheduled"
    assert {"SuccessfulCreate"} <= {e["reason"] for e in events(kubectl, "nightly")}

    # Suspended: no new run, whatever the minute.
    kubectl.run("patch", "extractioncronjob", "nightly", "--type=merge", "-p", '{"spec": {"suspend": true}}')
    wait_for("suspended", lambda: cron_status(kubectl, "nightly").get("reason") == "Suspended", 30)
    before = {j["metadata"]["name"] for j in runs(kubectl, "nightly")}
    assert cron_status(kubectl, "nightly").get("nextScheduleTime") is None
    time.sleep(63 - time.time() % 60)  # past the next minute boundary
    assert {j["metadata"]["name"] for j in runs(kubectl, "nightly")} <= before

    # Deleting the schedule deletes its runs (owner references, the real garbage collector).
    kubectl.run("delete", "extractioncronjob", "nightly", "--timeout=60s")
    wait_for("the runs garbage-collected", lambda: runs(kubectl, "nightly") == [], 90)
    assert job_status(kubectl, second["metadata"]["name"]) == {}
