"""An ExtractionCronJob's decisions (pure): which run is due, Forbid and Replace, missed times and
the starting deadline, suspend, history limits, time zones; the run's manifest; an invalid spec."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from prism_api import Phase, parse_job
from prism_api.cron_job import (
    CRON_LABEL,
    SCHEDULED_TIME_ANNOTATION,
    ExtractionCronJobSpec,
    ExtractionCronJobStatus,
    parse_cron_job,
)
from prism_operator.cron.runs import build_run, run_from
from prism_operator.cron.schedule import Run, decide_cron
from prism_operator.cron.schedule_check import decide

EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "scheduled.yaml").read_text())
CREATED = datetime(2026, 12, 1, 9, 0, 10, tzinfo=UTC)


def spec(**changes) -> ExtractionCronJobSpec:
    doc = copy.deepcopy(EXAMPLE)
    doc["spec"].update({"schedule": "*/10 * * * *", "timeZone": None, "startingDeadlineSeconds": None, **changes})
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    return parse_cron_job(doc).spec


def at(hh: int, mm: int, ss: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 12, day, hh, mm, ss, tzinfo=UTC)


def run(minute: int, phase: Phase, completed: datetime | None = None, hour: int = 9) -> Run:
    t = at(hour, minute)
    return Run(name=f"nightly-docs-{int(t.timestamp()) // 60}", phase=phase, scheduled=t, completed=completed)


def decide_at(now, s=None, old=None, runs=()):
    return decide_cron("nightly-docs", s or spec(), old or ExtractionCronJobStatus(), list(runs), now, CREATED)


def test_nothing_is_due_before_the_first_scheduled_time():
    d = decide_at(at(9, 5))
    assert d.create is None and d.delete == ()
    assert d.status.next_schedule_time == "2026-12-01T09:10:00Z" and d.status.last_schedule_time is None


def test_the_first_scheduled_time_creates_its_run_once():
    d = decide_at(at(9, 10, 3))
    assert d.create == at(9, 10)
    assert d.status.last_schedule_time == "2026-12-01T09:10:00Z" and d.status.next_schedule_time == "2026-12-01T09:20:00Z"
    assert [a.name for a in d.status.active] == [d.status.last_job] == [f"nightly-docs-{int(at(9, 10).timestamp()) // 60}"]
    assert [e.reason for e in d.events] == ["SuccessfulCreate"]
    # The next check (the index may not show the run yet): the status says it was created.
    again = decide_at(at(9, 10, 8), old=d.status)
    assert again.create is None and again.events == ()


def test_a_run_already_there_is_not_created_again():
    d = decide_at(at(9, 10, 3), runs=[run(10, Phase.PENDING)])
    assert d.create is None and d.status.last_schedule_time == "2026-12-01T09:10:00Z"


def test_forbid_waits_for_the_active_run_then_starts_late():
    busy = [run(10, Phase.RUNNING)]
    old = ExtractionCronJobStatus(last_schedule_time="2026-12-01T09:10:00Z")
    d = decide_at(at(9, 20, 2), old=old, runs=busy)
    assert d.create is None and d.status.reason == "Waiting" and "nightly-docs-" in d.status.message
    assert [e.reason for e in d.events] == ["JobAlreadyActive"]
    assert decide_at(at(9, 20, 7), old=d.status, runs=busy).events == ()  # said once
    # The run ends at 09:24: the 09:20 run starts then (no starting deadline).
    done = [run(10, Phase.SUCCEEDED, completed=at(9, 24))]
    late = decide_at(at(9, 24, 5), old=d.status, runs=done)
    assert late.create == at(9, 20) and late.status.reason == "Scheduled"
    assert late.status.last_successful_time == "2026-12-01T09:24:00Z"


def test_forbid_with_a_starting_deadline_skips_a_run_that_would_start_too_late():
    s = spec(startingDeadlineSeconds=120)
    old = ExtractionCronJobStatus(last_schedule_time="2026-12-01T09:10:00Z")
    done = [run(10, Phase.SUCCEEDED, completed=at(9, 24))]
    assert decide_at(at(9, 24, 5), s, old, done).create is None  # 09:20 is 4 min old: missed
    assert decide_at(at(9, 30, 5), s, old, done).create == at(9, 30)


def test_replace_deletes_the_active_run_and_starts_the_new_one():
    s = spec(concurrencyPolicy="Replace")
    busy = [run(10, Phase.RUNNING)]
    d = decide_at(at(9, 20, 2), s, ExtractionCronJobStatus(last_schedule_time="2026-12-01T09:10:00Z"), busy)
    assert d.delete == (busy[0].name,) and d.create == at(9, 20)
    assert [a.name for a in d.status.active] == [d.status.last_job]
    assert [e.reason for e in d.events] == ["ReplacingRun", "SuccessfulCreate"]


def test_many_missed_times_start_one_run_and_warn():
    old = ExtractionCronJobStatus(last_schedule_time="2026-11-20T09:00:00Z")
    d = decide_at(at(9, 0, 30), old=old)
    assert d.create == at(9, 0)
    assert [e.reason for e in d.events] == ["TooManyMissedTimes", "SuccessfulCreate"]


def test_suspend_creates_nothing_and_has_no_next_time():
    d = decide_at(at(9, 10, 3), spec(suspend=True))
    assert d.create is None and d.status.reason == "Suspended" and d.status.next_schedule_time is None
    # Unsuspended hours later, without a deadline: the most recent time runs (once).
    assert decide_at(at(13, 1), spec()).create == at(13, 0)


def test_history_limits_delete_the_oldest_finished_runs_only():
    runs = [run(m, Phase.SUCCEEDED, completed=at(9, m + 5)) for m in (0, 10, 20, 30)]
    runs += [run(m, Phase.FAILED, completed=at(10, m + 5), hour=10) for m in (0, 10)]
    runs += [run(20, Phase.RUNNING, hour=10)]
    s = spec(successfulJobsHistoryLimit=2, failedJobsHistoryLimit=1)
    d = decide_at(at(10, 25), s, ExtractionCronJobStatus(last_schedule_time="2026-12-01T10:20:00Z"), runs)
    assert d.delete == (runs[0].name, runs[1].name, runs[4].name)
    assert [a.name for a in d.status.active] == [runs[6].name]


def test_a_time_zone_moves_the_schedule_and_follows_daylight_saving():
    s = spec(schedule="30 2 * * *", timeZone="Europe/Paris")
    d = decide_at(at(12, 0), s)
    assert d.status.next_schedule_time == "2026-12-02T01:30:00Z"  # 02:30 CET is 01:30 UTC
    summer = decide_cron("nightly-docs", s, ExtractionCronJobStatus(), [], datetime(2026, 7, 1, 12, tzinfo=UTC),
                         CREATED)
    assert summer.status.next_schedule_time == "2026-07-02T00:30:00Z"  # CEST


def test_an_invalid_spec_creates_nothing_and_says_why():
    body = copy.deepcopy(EXAMPLE)
    body["metadata"].update(namespace="ns", uid="u-1", creationTimestamp="2026-12-01T09:00:00Z", generation=2)
    body["spec"]["schedule"] = "61 * * * *"
    d = decide(body, [], at(9, 30))
    assert d.create is None and d.status.reason == "InvalidSpec" and "spec.schedule" in d.status.message
    assert [e.reason for e in d.events] == ["InvalidSpec"]
    body["status"] = d.status.to_wire()
    assert decide(body, [], at(9, 31)).events == ()  # said once


def test_the_run_is_the_template_owned_by_the_schedule():
    body = copy.deepcopy(EXAMPLE)
    body["metadata"].update(namespace="ns", uid="u-1")
    manifest = build_run(body, at(1, 30, day=2))
    job = parse_job(manifest, target="cluster")
    assert job.metadata.name == "nightly-docs-29936250"
    assert job.spec == parse_cron_job(EXAMPLE).spec.job_template.spec
    meta = manifest["metadata"]
    assert meta["labels"] == {"team": "search", CRON_LABEL: "nightly-docs", "app.kubernetes.io/managed-by": "prism-operator"}
    assert meta["annotations"] == {SCHEDULED_TIME_ANNOTATION: "2026-12-02T01:30:00Z"}
    assert meta["ownerReferences"] == [{"apiVersion": "prism.dev/v1alpha1", "kind": "ExtractionCronJob",
                                        "name": "nightly-docs", "uid": "u-1", "controller": True,
                                        "blockOwnerDeletion": True}]
    back = run_from(meta["name"], meta["annotations"], {"phase": "Succeeded", "completionTime": "2026-12-02T02:00:00Z"})
    assert back == Run(meta["name"], Phase.SUCCEEDED, at(1, 30, day=2), at(2, 0, day=2))


@pytest.mark.parametrize("status", [None, {}, {"phase": "Nonsense"}])
def test_a_run_without_a_usable_status_is_pending(status):
    assert run_from("x", {}, status).phase == Phase.PENDING


def test_a_schedule_idle_for_years_is_cheap():
    old = ExtractionCronJobStatus(last_schedule_time="2020-01-01T00:00:00Z")
    d = decide_at(at(9, 0, 30), spec(schedule="* * * * *"), old)
    assert d.create == at(9, 0) and d.status.next_schedule_time == "2026-12-01T09:01:00Z"
    assert timedelta(0) < at(9, 1) - d.create
