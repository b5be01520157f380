"""What derivation consumes and produces: the observation, the actions the reconciler carries out,
and the Events it posts. Plain frozen dataclasses, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from prism_pipeline.spec import ExtractionJob, ExtractionJobStatus

from ..progress_client import ProgressSnapshot


# Actions the reconciler carries out, in order.
@dataclass(frozen=True)
class CreateCluster:
    pass


@dataclass(frozen=True)
class CreateRayJob:
    attempt: int


@dataclass(frozen=True)
class StopRayJob:
    """Delete the RayJob: KubeRay's finalizer on it stops the Ray job."""
    name: str


@dataclass(frozen=True)
class SuspendCluster:
    suspend: bool


@dataclass(frozen=True)
class DeleteCluster:
    name: str


Action = CreateCluster | CreateRayJob | StopRayJob | SuspendCluster | DeleteCluster


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
    progress: ProgressSnapshot | None = None


@dataclass(frozen=True)
class Decision:
    status: ExtractionJobStatus
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
