"""What derivation consumes and produces: the observation, the actions the reconciler carries out,
and the Events it posts. Plain frozen dataclasses, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prism_api import ExtractionJob, ExtractionJobStatus
from prism_api.progress_report import ProgressReport

from ..dashboard_client import RayJobState


# Actions the reconciler carries out, in order.
@dataclass(frozen=True)
class CreateCluster:
    pass


@dataclass(frozen=True)
class CreateRayJob:
    attempt: int


@dataclass(frozen=True)
class StopRayJob:
    """Delete the RayJob (cleanup; KubeRay's finalizer stops the Ray job only while the RayJob's
    jobStatus is not terminal, so fencing an attempt is StopViaDashboard's job)."""
    name: str


@dataclass(frozen=True)
class StopViaDashboard:
    """Ask the Ray dashboard to stop this submission (the attempt's Ray job)."""
    submission_id: str


@dataclass(frozen=True)
class SuspendCluster:
    suspend: bool


@dataclass(frozen=True)
class DeleteCluster:
    name: str


@dataclass(frozen=True)
class SaveDebug:
    """Read the submission's driver log through the dashboard and save its failure ledger and tail in
    the ConfigMap `config_map` (builders.debug_configmap)."""
    submission_id: str
    config_map: str


@dataclass(frozen=True)
class ScaleWorkersToZero:
    """Set replicas and minReplicas of each worker group (named, in order) of the RayCluster to 0: the
    head stays. (A worker group's `suspend`, KubeRay's own DeleteWorkers, is refused with autoscaling.)"""
    name: str
    groups: tuple[str, ...]


Action = (CreateCluster | CreateRayJob | StopRayJob | StopViaDashboard | SuspendCluster | DeleteCluster | SaveDebug
          | ScaleWorkersToZero)


@dataclass(frozen=True)
class DebugSaveFailure:
    """Why this process's last try to save a job's debug ConfigMap saved nothing."""
    error: str
    final: bool = False  # trying again cannot help (Ray has no such job)


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    job: ExtractionJob | None              # None: the spec is invalid
    old: ExtractionJobStatus
    now: datetime
    generation: int | None = None
    spec_errors: tuple[str, ...] = ()
    cluster_name: str = ""
    owns_cluster: bool = True
    cluster: dict | None = None             # the RayCluster, if it exists
    rayjob: dict | None = None              # the RayJob of old.attempt, if it exists
    rayjob_name: str = ""
    pod_problems: tuple[str, ...] = ()
    progress: ProgressReport | None = None  # the last good reading of old.attempt
    submission_id: str = ""                   # the Ray submission of old.attempt
    ray_job_state: RayJobState | None = None  # the dashboard's word on it; None: not read
    fence_since: datetime | None = None       # when stopping submission_id began (this process)
    debug_read: bool = False                  # whether debug_config_map was read
    debug_config_map: dict | None = None      # the job's <job>-debug ConfigMap, if it exists
    debug_save_failure: DebugSaveFailure | None = None  # the last try to save it (this process)


@dataclass(frozen=True)
class Decision:
    status: ExtractionJobStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    # Derive again with Observed.ray_job_state read: the decision depends on whether the current
    # attempt's Ray job has stopped.
    wants_ray_job_state: bool = False
    # The submission this decision waits on to stop ("" when none): the reconciler remembers since
    # when, which bounds the wait (Observed.fence_since).
    fencing: str = ""
    # Derive again with Observed.debug_config_map read: a finished job's failure record is due.
    wants_debug_config_map: bool = False
