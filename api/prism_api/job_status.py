"""The ExtractionJob status: phase, kstatus-style conditions and live progress.

Phases::

    Pending ──> Provisioning ──> Running ──> Succeeded
       │             │              │
       │             └──────────────┴──> Failed   (invalid spec, deadline, retries exhausted,
       │                                            too many failed files)
       └── any live phase <──> Suspended           (spec.suspend)

Succeeded and Failed are terminal. A failed attempt with retries left stays Running with the
condition Retrying while the next RayJob starts on the same cluster.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from .fields import PrismModel
from .progress_report import MAX_FAILURE_SAMPLES  # noqa: E402  (one bound for report and status)


class Phase(StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    def is_terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


CONDITION_TYPES = ("Ready", "Progressing", "Succeeded", "Failed", "Suspended", "ClusterReady", "Retrying")


class Condition(PrismModel):
    """A kstatus-style condition."""

    type: str = Field(max_length=64, description="One of " + ", ".join(CONDITION_TYPES) + ".")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=128, description="CamelCase reason.")
    message: str = Field(default="", max_length=32_768, description="Human-readable detail.")
    last_transition_time: str | None = Field(default=None, description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, ge=0, description="Generation this was computed for.")


class ExtractorProgress(PrismModel):
    """Progress of one extractor."""

    name: str = Field(max_length=63, description="Extractor name.")
    items_done: int = Field(default=0, ge=0, description="Items this extractor processed.")
    items_failed: int = Field(default=0, ge=0, description="Items this extractor failed on.")


class Progress(PrismModel):
    """Live progress, read from the pipeline's progress endpoint."""

    files_total: int = Field(default=0, ge=0, description="Files listed so far: it grows while `listing` is "
                             "InProgress (files are listed page by page as the pipeline runs).")
    listing: Literal["InProgress", "Complete"] | None = Field(
        default=None, description="InProgress while the source is still being listed (filesTotal grows), Complete "
        "once the whole source is listed and filesTotal is final. Unset before the pipeline reports.")
    files_done: int = Field(default=0, ge=0, description="Files fully processed.")
    files_failed: int = Field(default=0, ge=0, description="Files recorded in the failure ledger.")
    files_skipped: int = Field(default=0, ge=0, description="Files skipped (already in the sink).")
    summary: str = Field(default="", max_length=64, description="done/total, for `kubectl get`.")
    percent: int = Field(default=0, ge=0, le=100, description="Percent of files finished.")
    items_per_second: float = Field(default=0, ge=0, description="Recent item throughput.")
    eta_seconds: int | None = Field(default=None, ge=0, description="Estimated seconds left.")
    points_written: int = Field(default=0, ge=0, description="Points written to Qdrant.")
    extractors: list[ExtractorProgress] = Field(default_factory=list, max_length=64,
                                                description="Per-extractor item counts.")
    last_update_time: str | None = Field(default=None, description="When progress was last read.")


class FailureSample(PrismModel):
    """One failed file."""

    uri: str = Field(max_length=2048, description="The file.")
    stage: str = Field(max_length=64, description="Where it failed: list, read, decode, or an extractor name.")
    error: str = Field(max_length=1024, description="The error.")


class Failures(PrismModel):
    """Failed files: a count and a few samples (the full ledger is in the pipeline's output)."""

    count: int = Field(default=0, ge=0, description="Files that failed.")
    samples: list[FailureSample] = Field(default_factory=list, max_length=MAX_FAILURE_SAMPLES,
                                         description=f"At most {MAX_FAILURE_SAMPLES} examples.")


class Usage(PrismModel):
    """Resources the job consumed."""

    cpu_seconds: float = Field(default=0, ge=0, description="CPU-seconds of Ray worker time.")
    gpu_seconds: float = Field(default=0, ge=0, description="GPU-seconds of Ray worker time.")


class DebugRecord(PrismModel):
    """Where the failure ledger and the driver log's tail of a job that ended with failures were saved:
    a ConfigMap in the job's namespace that outlives the RayCluster and goes with the ExtractionJob."""

    config_map: str | None = Field(
        default=None, max_length=253,
        description="The ConfigMap: failures.jsonl (one JSON object per failed file: uri, stage, error) and "
        "driver-log-tail.txt. Unset when nothing could be saved (see message).",
    )
    failed_files: int = Field(default=0, ge=0,
                              description="Failed files the driver listed in its log (PRISM_FAILURE lines).")
    saved_time: str | None = Field(default=None, description="When it was saved (RFC 3339).")
    message: str = Field(default="", max_length=1024,
                         description="What was cut to fit a ConfigMap, or why nothing could be saved.")


class ExtractionJobStatus(PrismModel):
    """Observed state, written by the operator only."""

    phase: Phase = Field(default=Phase.PENDING, description="Pending, Provisioning, Running, Succeeded, "
                         "Failed or Suspended.")
    reason: str = Field(default="", max_length=128, description="Why the job is in this phase.")
    message: str = Field(default="", max_length=32_768, description="Human-readable detail.")
    observed_generation: int | None = Field(default=None, ge=0,
                                            description="metadata.generation this status reflects.")
    conditions: list[Condition] = Field(default_factory=list, max_length=16, description="kstatus conditions.")
    ray_cluster: str | None = Field(default=None, max_length=63, description="The RayCluster the job runs on.")
    ray_job: str | None = Field(default=None, max_length=63, description="The RayJob of the current attempt.")
    dashboard_url: str | None = Field(default=None, alias="dashboardURL", max_length=512,
                                      description="Ray dashboard.")
    attempt: int = Field(default=0, ge=0, description="Current attempt (1 is the first).")
    failed_attempts: int = Field(default=0, ge=0, description="Attempts that failed; a new attempt starts "
                                 "while this is at most spec.retries.limit (resumes do not count).")
    start_time: str | None = Field(default=None, description="When the job started (RFC 3339).")
    completion_time: str | None = Field(default=None, description="When the job finished (RFC 3339).")
    progress: Progress = Field(default_factory=Progress, description=Progress.__doc__)
    failures: Failures = Field(default_factory=Failures, description=Failures.__doc__)
    usage: Usage = Field(default_factory=Usage, description=Usage.__doc__)
    debug: DebugRecord | None = Field(default=None, description=DebugRecord.__doc__)
