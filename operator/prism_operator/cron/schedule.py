"""What an ExtractionCronJob should do now (pure): which run to create, which runs to delete, and the
status, from its spec, its last status and its runs (ExtractionJobs labelled with its name).

The semantics are the Kubernetes CronJob controller's (pkg/controller/cronjob): the most recent
scheduled time after the last one created (or the object's creation) and not after now is due; with
`startingDeadlineSeconds` a time older than that is missed, not started; any number of missed times
starts one run; runs are named `<cron>-<minutes since the epoch>`, so a run is never created twice
for one time. Forbid skips a due time while a run is active (it is started once that run ends, within
the deadline); Replace deletes the active runs first. Finished runs beyond the history limits are
deleted, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from prism_api import Phase
from prism_api.cron_job import (
    MAX_MISSED_STARTS,
    ActiveRun,
    ExtractionCronJobSpec,
    ExtractionCronJobStatus,
    run_name,
)

from ..status.clock import parse_time, rfc3339
from ..status.model import Event


@dataclass(frozen=True)
class Run:
    """One ExtractionJob of the schedule, as the operator's index of them holds it."""

    name: str
    phase: Phase
    scheduled: datetime | None = None  # from the run's scheduled-time annotation
    completed: datetime | None = None  # status.completionTime


@dataclass(frozen=True)
class CronDecision:
    status: ExtractionCronJobStatus
    create: datetime | None = None      # the scheduled time of the run to create
    delete: tuple[str, ...] = ()        # runs to delete (Replace, history limits)
    events: tuple[Event, ...] = field(default_factory=tuple)


def _times(schedule: str, zone: ZoneInfo, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """Scheduled times t with after < t <= until, at most `limit` + 1 of them (oldest first)."""
    from croniter import croniter

    it = croniter(schedule, after.astimezone(zone))
    out: list[datetime] = []
    while len(out) <= limit:
        t = it.get_next(datetime).astimezone(UTC)
        if t > until:
            break
        out.append(t)
    return out


def most_recent_due(schedule: str, zone: ZoneInfo, earliest: datetime, now: datetime) -> tuple[datetime | None, int]:
    """The latest scheduled time in (earliest, now], and how many there are (capped at
    MAX_MISSED_STARTS + 1). Searches back from now, so a schedule idle for years costs nothing."""
    from croniter import croniter

    latest = croniter(schedule, (now + timedelta(seconds=1)).astimezone(zone)).get_prev(datetime).astimezone(UTC)
    if latest <= earliest or latest > now:
        return None, 0
    return latest, len(_times(schedule, zone, earliest, now, MAX_MISSED_STARTS))


def next_time(schedule: str, zone: ZoneInfo, now: datetime) -> datetime:
    from croniter import croniter

    return croniter(schedule, now.astimezone(zone)).get_next(datetime).astimezone(UTC)


def _history(runs: list[Run], phase: Phase, keep: int) -> list[str]:
    done = sorted((r for r in runs if r.phase == phase),
                  key=lambda r: (r.completed or r.scheduled or datetime.min.replace(tzinfo=UTC), r.name))
    return [r.name for r in done[:max(0, len(done) - keep)]]


def decide_cron(name: str, spec: ExtractionCronJobSpec, old: ExtractionCronJobStatus, runs: list[Run],
                now: datetime, created: datetime, generation: int | None = None) -> CronDecision:
    zone = ZoneInfo(spec.time_zone or "UTC")
    active = sorted((r for r in runs if not r.phase.is_terminal()), key=lambda r: r.name)
    known = {r.name for r in runs}
    scheduled = [t for t in (parse_time(old.last_schedule_time), *(r.scheduled for r in runs)) if t]
    last_scheduled = max(scheduled) if scheduled else None
    earliest = last_scheduled or created
    if spec.starting_deadline_seconds is not None:
        earliest = max(earliest, now - timedelta(seconds=spec.starting_deadline_seconds))

    events: list[Event] = []
    create: datetime | None = None
    delete: list[str] = []
    reason, message = "Scheduled", ""
    due, count = (None, 0) if spec.suspend else most_recent_due(spec.schedule, zone, earliest, now)
    if spec.suspend:
        reason, message = "Suspended", "spec.suspend is true: no new runs"
    elif due is not None:
        if count > MAX_MISSED_STARTS:
            events.append(Event("Warning", "TooManyMissedTimes",
                                f"more than {MAX_MISSED_STARTS} scheduled times were missed; starting the most "
                                "recent one only (set startingDeadlineSeconds to skip late runs)"))
        wanted = run_name(name, due)
        if wanted in known:
            last_scheduled = max(last_scheduled or due, due)
        elif active and spec.concurrency_policy == "Forbid":
            reason = "Waiting"
            message = (f"the run for {rfc3339(due)} waits: {', '.join(r.name for r in active)} is still active "
                       "(concurrencyPolicy Forbid)")
            if old.reason != "Waiting":
                events.append(Event("Normal", "JobAlreadyActive", message))
        else:
            if active:  # Replace
                delete.extend(r.name for r in active)
                events.append(Event("Normal", "ReplacingRun", f"deleting the active run(s) "
                                    f"{', '.join(r.name for r in active)} for the run of {rfc3339(due)}"))
                active = []
            create, last_scheduled = due, due
            events.append(Event("Normal", "SuccessfulCreate", f"created ExtractionJob {wanted} for {rfc3339(due)}"))

    delete += _history(runs, Phase.SUCCEEDED, spec.successful_jobs_history_limit)
    delete += _history(runs, Phase.FAILED, spec.failed_jobs_history_limit)

    succeeded = [t for t in (parse_time(old.last_successful_time),
                             *(r.completed for r in runs if r.phase == Phase.SUCCEEDED)) if t]
    new_runs = [ActiveRun(name=r.name) for r in active if r.name not in delete]
    if create is not None:
        new_runs.append(ActiveRun(name=run_name(name, create)))
    last_job = run_name(name, create) if create is not None else old.last_job
    status = ExtractionCronJobStatus(
        active=new_runs[:64],
        last_schedule_time=rfc3339(last_scheduled) if last_scheduled else None,
        last_successful_time=rfc3339(max(succeeded)) if succeeded else None,
        next_schedule_time=None if spec.suspend else rfc3339(next_time(spec.schedule, zone, now)),
        last_job=last_job,
        reason=reason,
        message=message,
        observed_generation=generation,
    )
    return CronDecision(status=status, create=create, delete=tuple(dict.fromkeys(delete)), events=tuple(events))
