"""The ExtractionCronJob contract: ExtractionJobs created on a cron schedule, as a CronJob creates Jobs.

Each run is an ordinary ExtractionJob made from `spec.jobTemplate`, named `<cron>-<minutes since the
epoch of its scheduled time>` (as CronJob names its Jobs), owned by the ExtractionCronJob and
labelled with its name. With `incremental` (the ExtractionJob default) each run processes only new and
changed files. Two runs never write one collection at once: `concurrencyPolicy` is Forbid (skip a run
while the last is active; it starts when that one ends, within `startingDeadlineSeconds`) or Replace
(stop the active run, start the new one); CronJob's Allow is refused for that reason.

The schedule is the Kubernetes CronJob syntax: five fields (minute hour day-of-month month
day-of-week; names such as MON and JAN; ranges, steps, lists; `?` as `*`) or one of @yearly,
@annually, @monthly, @weekly, @daily, @midnight, @hourly; the time zone is `timeZone`, never a
`TZ=` prefix. croniter evaluates it (day-of-month and day-of-week are OR-ed, as in cron).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from .child_names import MAX_JOB_NAME_LENGTH
from .errors import FieldError, SpecError, validate_manifest
from .fields import PrismModel, check_object_name
from .job import API_VERSION, ObjectMeta
from .job_spec import ExtractionJobSpec

CRON_KIND = "ExtractionCronJob"
CRON_PLURAL = "extractioncronjobs"
# `<cron>-<minutes>`: minutes since the epoch take 8 digits until the year 2160.
SCHEDULED_SUFFIX_DIGITS = 8
MAX_CRON_NAME_LENGTH = MAX_JOB_NAME_LENGTH - 1 - SCHEDULED_SUFFIX_DIGITS
# Labels and annotations on every run.
CRON_LABEL = "prism.dev/cron-job"
SCHEDULED_TIME_ANNOTATION = "prism.dev/scheduled-time"
MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# The Kubernetes CronJob controller gives up counting missed starts at 100; so does Prism (it then
# starts the most recent one only, with a warning).
MAX_MISSED_STARTS = 100


def check_schedule(schedule: str) -> str | None:
    """Why `schedule` is not a Kubernetes cron schedule, or None when it is."""
    from croniter import croniter

    text = schedule.strip()
    if not text:
        return "must not be empty: five fields (minute hour day-of-month month day-of-week) or @hourly, @daily, ..."
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        return "must not set a time zone: use spec.timeZone (e.g. timeZone: Europe/Paris)"
    if text.startswith("@"):
        return None if text in MACROS else f"unknown macro {text!r}: use one of {', '.join(MACROS)}"
    fields = text.split()
    if len(fields) != 5:
        return (f"must have five fields (minute hour day-of-month month day-of-week), got {len(fields)}: "
                f"{text!r}; for example '0 3 * * *' is 03:00 every day")
    if not croniter.is_valid(text):
        return f"{text!r} is not a valid cron schedule (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6)"
    return None


def check_time_zone(zone: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {zone!r}: use an IANA name such as UTC, Europe/Paris, America/New_York"
    return None


class JobTemplateMeta(PrismModel):
    """Labels and annotations copied onto every ExtractionJob the schedule creates."""

    labels: dict[str, str] = Field(default_factory=dict, description="Labels of each run.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of each run.")


class JobTemplate(PrismModel):
    """The ExtractionJob each run creates."""

    metadata: JobTemplateMeta = Field(default_factory=JobTemplateMeta, description=JobTemplateMeta.__doc__)
    spec: ExtractionJobSpec = Field(description="The spec of each run's ExtractionJob (see ExtractionJob).")


class ExtractionCronJobSpec(PrismModel):
    """When to run, what to run, and how many finished runs to keep."""

    schedule: str = Field(
        min_length=1, max_length=128,
        description="Cron schedule, as a Kubernetes CronJob's: five fields (minute hour day-of-month month "
        "day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly. Example: '0 3 * * *'.",
    )
    time_zone: str | None = Field(
        default=None, max_length=64,
        description="IANA time zone the schedule is read in (default UTC), e.g. Europe/Paris.",
    )
    concurrency_policy: Literal["Forbid", "Replace"] = Field(
        default="Forbid",
        description="While a run is still active at the next scheduled time: Forbid skips the new run "
        "(it starts once the active one ends, if startingDeadlineSeconds allows), Replace stops the "
        "active run and starts the new one. (CronJob's Allow is not offered: two runs must never "
        "write one collection at once.)",
    )
    suspend: bool = Field(default=False, description="Create no new runs; active runs go on.")
    starting_deadline_seconds: int | None = Field(
        default=None, ge=0,
        description="A run not started within this many seconds of its scheduled time is skipped "
        "(missed). Unset: late runs start however late (one run for any number of missed times).",
    )
    successful_jobs_history_limit: int = Field(default=3, ge=0, le=100,
                                               description="Succeeded runs kept; older ones are deleted.")
    failed_jobs_history_limit: int = Field(default=1, ge=0, le=100,
                                           description="Failed runs kept; older ones are deleted.")
    job_template: JobTemplate = Field(description=JobTemplate.__doc__)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        problem = check_schedule(value)
        if problem:
            raise PydanticCustomError("cron_schedule", "{problem}", {"problem": problem})
        return value.strip()

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        problem = check_time_zone(value) if value else None
        if problem:
            raise PydanticCustomError("time_zone", "{problem}", {"problem": problem})
        return value


class ActiveRun(PrismModel):
    """A run that has not finished."""

    name: str = Field(max_length=63, description="The ExtractionJob's name.")


class ExtractionCronJobStatus(PrismModel):
    """Observed state, written by the operator only."""

    active: list[ActiveRun] = Field(default_factory=list, max_length=64, description="Runs not finished.")
    last_schedule_time: str | None = Field(default=None, description="Scheduled time of the last run "
                                           "created (RFC 3339).")
    last_successful_time: str | None = Field(default=None, description="When the last run succeeded (RFC 3339).")
    next_schedule_time: str | None = Field(default=None, description="The next scheduled time (RFC 3339); "
                                           "unset while suspended.")
    last_job: str | None = Field(default=None, max_length=63, description="The last run created.")
    reason: str = Field(default="", max_length=128, description="Why the schedule is in this state "
                        "(Scheduled, Suspended, InvalidSpec, ...).")
    message: str = Field(default="", max_length=32_768, description="Human-readable detail.")
    observed_generation: int | None = Field(default=None, ge=0,
                                            description="metadata.generation this status reflects.")


class CronJobMeta(ObjectMeta):
    """The parts of metadata Prism reads (as an ExtractionJob's), with the schedule's own name bound."""

    creation_timestamp: str | None = None

    @field_validator("name")
    @classmethod
    def _child_safe_name(cls, name: str) -> str:  # replaces ObjectMeta's: the runs' names are the bound
        return check_object_name(name, MAX_CRON_NAME_LENGTH, "each run's name '<name>-<8 digits>' is a valid "
                                 "ExtractionJob name")


class ExtractionCronJob(PrismModel):
    """An ExtractionCronJob manifest."""

    model_config = {**PrismModel.model_config, "extra": "forbid"}

    api_version: Literal["prism.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["ExtractionCronJob"]
    metadata: CronJobMeta
    spec: ExtractionCronJobSpec
    status: ExtractionCronJobStatus | None = None


def parse_cron_job(obj: Any) -> ExtractionCronJob:
    """Validate a whole ExtractionCronJob manifest. Raises SpecError listing every problem (the run's
    own rules included: its template must be a valid ExtractionJob spec for a cluster)."""
    from .rules import cluster_rule_errors

    cron = validate_manifest(ExtractionCronJob, obj, CRON_KIND)
    errors = [FieldError(f"spec.jobTemplate.spec.{p}", m) for p, m in cluster_rule_errors(cron.spec.job_template.spec)]
    if errors:
        raise SpecError(errors)
    return cron


def run_name(cron_name: str, scheduled: datetime) -> str:
    """The ExtractionJob of the run scheduled at `scheduled`: `<cron>-<minutes since the epoch>`."""
    return f"{cron_name}-{int(scheduled.timestamp()) // 60}"


__all__ = [
    "API_VERSION", "CRON_KIND", "CRON_LABEL", "CRON_PLURAL", "MAX_CRON_NAME_LENGTH", "MAX_MISSED_STARTS",
    "SCHEDULED_TIME_ANNOTATION", "ExtractionCronJob", "ExtractionCronJobSpec", "ExtractionCronJobStatus",
    "JobTemplate", "check_schedule", "check_time_zone", "parse_cron_job", "run_name",
]
