"""One reconcile of one ExtractionJob: observe -> derive (pure) -> act -> write status (the one place).

Every handler (create, resume, spec update, timer) runs this same level-triggered function, so a
restarted operator or a repeated call converges on the same children: names are deterministic and
creating an object that exists is a no-op.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import ValidationError

from prism_api import ExtractionJob, ExtractionJobStatus, Phase, SpecError, parse_job
from prism_api.child_names import MAX_ATTEMPT
from prism_api.progress_report import ProgressReport, ReportIdentity
from prism_api.search_service import SHARED_WITH_SERVICE_ANNOTATION

from . import operator_metrics as metrics
from .builders import build_ray_cluster, build_ray_job
from .builders.debug_configmap import DriverLogDigest, build_debug_config_map, debug_config_map_name
from .builders.raycluster import cluster_name_for
from .builders.rayjob import entrypoint_error, rayjob_name_for, submission_id
from .child_index import ChildIndexes, ChildLedger, slim_cluster, slim_ray_job
from .dashboard_client import RayJobState, dashboard_url, get_job_state, read_job_logs, stop_job
from .k8s_api import RAYCLUSTERS, RAYJOBS, KubeApi, KubeApiError, NamespaceTerminating
from .progress_scraper import fetch_progress, progress_url
from .settings import OperatorConfig
from .status.clock import rfc3339
from .status.derive import cluster_state, derive
from .status.model import (
    CreateCluster,
    CreateRayJob,
    DebugSaveFailure,
    Decision,
    DeleteCluster,
    Observed,
    SaveDebug,
    ScaleWorkersToZero,
    StopRayJob,
    StopViaDashboard,
    SuspendCluster,
)
from .status.patch import merge_patch
from .status.pods import pod_problems

log = logging.getLogger(__name__)
MANIFEST_KEYS = ("apiVersion", "kind", "metadata", "spec")
# A driver log can be tens of MiB: its one read gets this many dashboard timeouts (30 s by default).
LOG_READ_TIMEOUTS = 6
# KubeRay labels the RayCluster it makes for a RayService (utils.RayOriginatedFromCRDLabelKey).
ORIGINATED_FROM_CRD_LABEL = "ray.io/originated-from-crd"
ORIGINATED_FROM_CR_NAME_LABEL = "ray.io/originated-from-cr-name"


def rayservice_cluster_refusal(job: ExtractionJob, cluster: dict | None) -> str:
    """Why the job must not start on `cluster.existing` ("" when it may): a RayService's RayCluster is
    replaced by KubeRay whenever the RayService's cluster spec changes, which kills the batch jobs on
    it, unless the job says it accepts that (SHARED_WITH_SERVICE_ANNOTATION: "true")."""
    labels = ((cluster or {}).get("metadata") or {}).get("labels") or {}
    if not job.spec.cluster.existing or labels.get(ORIGINATED_FROM_CRD_LABEL) != "RayService":
        return ""
    if job.metadata.annotations.get(SHARED_WITH_SERVICE_ANNOTATION) == "true":
        return ""
    owner = labels.get(ORIGINATED_FROM_CR_NAME_LABEL) or "a RayService"
    return (f"spec.cluster.existing: RayCluster {job.spec.cluster.existing} belongs to RayService {owner}; "
            "KubeRay replaces a RayService's cluster when its cluster spec changes, killing batch jobs on it. "
            f"Create the job with the annotation {SHARED_WITH_SERVICE_ANNOTATION}: \"true\" to accept that, "
            "or run it on a RayCluster of its own (leave cluster.existing unset)")


def old_status(body: Any) -> ExtractionJobStatus:
    raw = dict(body.get("status") or {})
    try:
        return ExtractionJobStatus.model_validate(raw)
    except ValidationError:
        # Only this operator writes status; an unreadable one (older version, hand edits) restarts
        # the bookkeeping from the fields that still parse rather than wedging the job.
        known = set(ExtractionJobStatus.model_fields) | {f.alias for f in ExtractionJobStatus.model_fields.values()
                                                         if f.alias}
        try:
            return ExtractionJobStatus.model_validate({k: v for k, v in raw.items()
                                                       if k in known and k != "conditions"})
        except ValidationError:
            return ExtractionJobStatus()


def head_service(cluster: dict, cluster_name: str) -> str:
    head = ((cluster.get("status") or {}).get("head") or {})
    return head.get("serviceName") or f"{cluster_name}-head-svc"


def write_status(patch: dict, body: Any, status: ExtractionJobStatus) -> dict:
    """The one place the ExtractionJob's status is written: only the fields that changed."""
    diff = merge_patch(dict(body.get("status") or {}), status.to_wire())
    if diff:
        patch.setdefault("status", {}).update(diff)
    return diff


@dataclass(frozen=True)
class Outcome:
    status: ExtractionJobStatus
    errors: list[str]  # API calls that failed; the caller retries the reconcile


@dataclass
class JobMemory:
    """What this operator process remembers of one job between reconciles (kept in kopf's memo; a
    restart forgets it, which costs at most a repeated wait)."""

    # The status derived last time: the body kopf hands over may predate that status's patch.
    last_status: ExtractionJobStatus | None = None
    # The last good progress reading, of this attempt: a failed read (the head restarting, the driver
    # gone) must not erase the pipeline's outcome.
    progress: ProgressReport | None = None
    progress_attempt: int = 0
    # The submission being stopped through the dashboard, and since when (bounds the wait).
    fencing: str = ""
    fencing_since: datetime | None = None
    # Why the last try to save the job's debug ConfigMap saved nothing (bounds and words the give-up).
    debug_save_failure: DebugSaveFailure | None = None
    # The children as the API told this process (creates, fallback GETs) while kopf's index lags.
    children: ChildLedger = dataclasses.field(default_factory=ChildLedger)

    def remember_progress(self, attempt: int, report: ProgressReport | None) -> ProgressReport | None:
        if attempt != self.progress_attempt:
            self.progress, self.progress_attempt = None, attempt
        if report is not None:
            self.progress = report
        return self.progress

    def remember_fencing(self, submission: str, now: datetime) -> None:
        if submission != self.fencing:
            self.fencing, self.fencing_since = submission, (now if submission else None)

    def fence_since(self, submission: str) -> datetime | None:
        return self.fencing_since if submission and submission == self.fencing else None


@dataclass
class Reconciler:
    api: KubeApi
    session: aiohttp.ClientSession
    config: OperatorConfig

    async def observe(self, body: Any, old: ExtractionJobStatus, now: datetime,
                      memory: JobMemory | None = None, indexes: ChildIndexes | None = None) -> Observed:
        """The job and its children. With `indexes` (kopf's watches, handlers.py) the children cost no
        API request unless the index lacks one the status says exists (child_index.py); without them
        (tests, tools) they are read from the API."""
        memory = memory if memory is not None else JobMemory()
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        manifest = {k: body[k] for k in MANIFEST_KEYS if k in body}
        try:
            job: ExtractionJob = parse_job(manifest, target="cluster")
        except SpecError as exc:
            return Observed(job=None, old=old, now=now, generation=meta.get("generation"),
                            spec_errors=tuple(str(e) for e in exc.errors))
        too_large = entrypoint_error(job)
        if too_large:
            # Checked before any child exists: no RayJob could carry this document.
            return Observed(job=None, old=old, now=now, generation=meta.get("generation"),
                            spec_errors=(f"spec: {too_large}",))
        cluster_name = cluster_name_for(job)
        rayjob_name = rayjob_name_for(job, old.attempt) if 1 <= old.attempt <= MAX_ATTEMPT else ""
        owns_cluster = not job.spec.cluster.existing
        # Made by an earlier reconcile (an attempt started with its create), or someone else's cluster.
        expected = old.attempt >= 1 or not owns_cluster
        cluster = await self._child(RAYCLUSTERS, namespace, cluster_name, memory, indexes, expected)
        rayjob = (await self._child(RAYJOBS, namespace, rayjob_name, memory, indexes, old.attempt >= 1)
                  if rayjob_name else None)
        if old.attempt <= 1 and rayjob is None and not old.phase.is_terminal():
            # Before the first RayJob only: a job already running there is not failed afterwards.
            refusal = rayservice_cluster_refusal(job, cluster)
            if refusal:
                return Observed(job=None, old=old, now=now, generation=meta.get("generation"),
                                spec_errors=(refusal,))
        problems: list[str] = []
        live = not old.phase.is_terminal() and old.phase != Phase.SUSPENDED
        if cluster is not None and live and cluster_state(cluster) != "ready":
            # The pods of Prism's own clusters are watched; a shared cluster's (spec.cluster.existing)
            # carry no Prism label and are listed while it is not ready (rare: shared ones run).
            pods = (indexes.cluster_pods(namespace, cluster_name) if indexes is not None and owns_cluster
                    else await self.api.list_cluster_pods(namespace, cluster_name))
            problems = pod_problems(pods)
        progress = None
        if cluster is not None and rayjob_name and cluster_state(cluster) != "suspended":
            identity = ReportIdentity(job.metadata.name, namespace, old.attempt)
            progress = await self._read_progress(namespace, head_service(cluster, cluster_name), old.phase,
                                                 identity)
        submission = submission_id(rayjob, rayjob_name) if rayjob_name else ""
        return Observed(
            job=job, old=old, now=now, generation=meta.get("generation"),
            cluster_name=cluster_name, owns_cluster=owns_cluster, cluster=cluster,
            rayjob=rayjob, rayjob_name=rayjob_name, pod_problems=tuple(problems),
            progress=memory.remember_progress(old.attempt, progress),
            submission_id=submission, fence_since=memory.fence_since(submission),
            debug_save_failure=memory.debug_save_failure,
        )

    async def _child(self, kind: str, namespace: str, name: str, memory: JobMemory, indexes: ChildIndexes | None,
                     expected: bool) -> dict | None:
        get = self.api.get_ray_cluster if kind == RAYCLUSTERS else self.api.get_ray_job
        if indexes is None:
            return await get(namespace, name)
        indexed = (indexes.cluster if kind == RAYCLUSTERS else indexes.ray_job)(namespace, name)
        slim = slim_cluster if kind == RAYCLUSTERS else slim_ray_job

        async def read() -> dict | None:
            body = await get(namespace, name)
            metrics.INDEX_FALLBACK_READS.labels(kind=kind).inc()
            return None if body is None else slim(body)

        return await memory.children.child(kind, name, indexed, expected, read)

    async def _read_progress(self, namespace: str, service: str, phase: Phase,
                             identity: ReportIdentity) -> ProgressReport | None:
        url = progress_url(self.config.progress_url_template, namespace, service)
        reading = await fetch_progress(self.session, url, self.config.progress_timeout, identity)
        if reading.error:
            # Expected while the head starts or between attempts; worth a line once running.
            level = logging.INFO if phase == Phase.RUNNING else logging.DEBUG
            log.log(level, "progress endpoint not readable: %s", reading.error)
        return reading.report

    def _dashboard(self, namespace: str, cluster: dict | None, cluster_name: str) -> str:
        return dashboard_url(self.config.dashboard_url_template, namespace, head_service(cluster or {}, cluster_name))

    async def _read_ray_job(self, observed: Observed, namespace: str) -> RayJobState:
        base = self._dashboard(namespace, observed.cluster, observed.cluster_name)
        state = await get_job_state(self.session, base, observed.submission_id, self.config.dashboard_timeout)
        if state.error:
            log.info("Ray job %s: dashboard not readable: %s", observed.submission_id, state.error)
        return state

    async def _save_debug(self, observed: Observed, namespace: str, submission: str, memory: JobMemory) -> None:
        """Read the driver log (one bounded request) and create the `<job>-debug` ConfigMap from it.
        What went wrong is remembered for the next derive, which tries again or gives up."""
        base = self._dashboard(namespace, observed.cluster, observed.cluster_name)
        digest = DriverLogDigest()
        read = await read_job_logs(self.session, base, submission, self.config.dashboard_timeout * LOG_READ_TIMEOUTS,
                                   digest.feed)
        if read.error:
            memory.debug_save_failure = DebugSaveFailure(read.error, final=not read.found)
            log.info("driver log of Ray job %s not read: %s", submission, read.error)
            return
        config_map = build_debug_config_map(observed.job, digest.finish(), ray_job=submission,
                                            saved_time=rfc3339(observed.now), read_cut=read.cut)
        name = config_map["metadata"]["name"]
        try:
            created = await self.api.create_config_map(config_map)
        except KubeApiError as exc:
            memory.debug_save_failure = DebugSaveFailure(str(exc))
            raise
        if created:
            memory.debug_save_failure = None
            log.info("saved %d failed files and the driver log's tail in ConfigMap %s", digest.failures_listed, name)
        else:  # ours from an earlier try (the next derive sees it), or a deleted namesake's awaiting GC
            memory.debug_save_failure = DebugSaveFailure(f"ConfigMap {name} exists and is not this job's")

    async def act(self, decision: Decision, observed: Observed, namespace: str,
                  memory: JobMemory | None = None) -> list[str] | None:
        """Carry out the decided actions; returns the errors (the next reconcile retries them), or
        None when the namespace is being deleted (nothing more can be created or posted there)."""
        job = observed.job
        memory = memory if memory is not None else JobMemory()
        errors: list[str] = []
        for action in decision.actions:
            try:
                match action:
                    case CreateCluster():
                        created = await self.api.create_child(build_ray_cluster(job))
                        if created:
                            memory.children.created(RAYCLUSTERS, slim_cluster(created))
                            log.info("created RayCluster %s", job and cluster_name_for(job))
                    case CreateRayJob(attempt=attempt):
                        created = await self.api.create_child(build_ray_job(job, attempt))
                        if created:
                            memory.children.created(RAYJOBS, slim_ray_job(created))
                            log.info("created RayJob %s", rayjob_name_for(job, attempt))
                    case StopRayJob(name=name):
                        if await self.api.delete_ray_job(namespace, name):
                            log.info("deleted RayJob %s", name)
                    case StopViaDashboard(submission_id=submission):
                        # Not an API error: the next reconcile reads the job's state and asks again.
                        base = self._dashboard(namespace, observed.cluster, observed.cluster_name)
                        failed = await stop_job(self.session, base, submission, self.config.dashboard_timeout)
                        if failed:
                            log.info("stopping Ray job %s: %s", submission, failed)
                        else:
                            log.info("asked the Ray dashboard to stop Ray job %s", submission)
                    case SuspendCluster(suspend=suspend):
                        await self.api.suspend_ray_cluster(namespace, cluster_name_for(job), suspend)
                    case DeleteCluster(name=name):
                        if await self.api.delete_ray_cluster(namespace, name):
                            log.info("deleted RayCluster %s", name)
                    case ScaleWorkersToZero(name=name, groups=groups):
                        await self.api.scale_workers_to_zero(namespace, name, groups)
                        log.info("scaled the workers of RayCluster %s to zero (kept for debugging)", name)
                    case SaveDebug(submission_id=submission):
                        await self._save_debug(observed, namespace, submission, memory)
            except NamespaceTerminating:
                log.info("namespace %s is being deleted: not acting on it", namespace)
                return None
            except KubeApiError as exc:
                errors.append(str(exc))
                log.warning("%s failed: %s", type(action).__name__, exc)
        return errors

    async def reconcile(self, body: Any, patch: dict, memory: JobMemory | None = None,
                        now: datetime | None = None, indexes: ChildIndexes | None = None) -> Outcome:
        """`memory` is what this process kept of the job (its last derived status, progress reading,
        fencing clock, children it created); a fresh one when None. `indexes`: the watched children."""
        started = time.monotonic()
        now = now or datetime.now(UTC)
        memory = memory if memory is not None else JobMemory()
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        old = memory.last_status if memory.last_status is not None else old_status(body)
        try:
            observed = await self.observe(body, old, now, memory, indexes)
        except KubeApiError as exc:
            metrics.RECONCILE_ERRORS.inc()
            return Outcome(old, [f"observing the children: {exc}"])
        decision = derive(observed)
        if decision.wants_ray_job_state:
            # The decision hangs on whether the attempt's Ray job still runs: ask the dashboard.
            observed = dataclasses.replace(observed, ray_job_state=await self._read_ray_job(observed, namespace))
            decision = derive(observed)
        unread: list[str] = []
        if decision.wants_debug_config_map:
            # A finished job's debug record is due: is its ConfigMap there already? Not knowing counts as
            # a failed try to save it, which the record's own deadline bounds (the TTL never waits for ever).
            try:
                saved = await self.api.get_config_map(namespace, debug_config_map_name(observed.job))
            except KubeApiError as exc:
                saved, unread = None, [f"reading the debug ConfigMap: {exc}"]
                memory.debug_save_failure = DebugSaveFailure(unread[0])
            observed = dataclasses.replace(observed, debug_read=True, debug_config_map=saved,
                                           debug_save_failure=memory.debug_save_failure)
            decision = derive(observed)
        memory.remember_fencing(decision.fencing, now)
        errors = await self.act(decision, observed, namespace, memory)
        if errors is None:  # the namespace is going away, and the job with it: Events would be refused
            errors = []
        else:
            for event in decision.events:
                self.api.post_event(body, event.type, event.reason, event.message)
        errors = unread + errors
        write_status(patch, body, decision.status)
        memory.last_status = decision.status
        if errors:
            metrics.RECONCILE_ERRORS.inc()
        metrics.observe_job(namespace, name, decision.status)
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        return Outcome(decision.status, errors)

    async def delete(self, body: Any) -> None:
        """Finalizer: stop the current attempt's Ray job (through the dashboard, best effort and
        bounded, and by deleting its RayJob); owner references remove the rest."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        old = old_status(body)
        manifest = {k: body[k] for k in MANIFEST_KEYS if k in body}
        try:
            job = parse_job(manifest, target="cluster")
        except SpecError:
            job = None  # an invalid job never created children
        if job is not None and 1 <= old.attempt <= MAX_ATTEMPT:
            rayjob_name = rayjob_name_for(job, old.attempt)
            await self._stop_for_delete(namespace, job, rayjob_name)
            if await self.api.delete_ray_job(namespace, rayjob_name):
                log.info("deleted RayJob %s", rayjob_name)
        metrics.forget_job(namespace, name)

    async def _stop_for_delete(self, namespace: str, job: ExtractionJob, rayjob_name: str) -> None:
        """Ask the dashboard to stop the attempt's Ray job: one bounded request, no confirmation (the
        RayCluster, if owned, goes with the job anyway). Never fails the finalizer."""
        cluster_name = cluster_name_for(job)
        try:
            cluster = await self.api.get_ray_cluster(namespace, cluster_name)
            rayjob = await self.api.get_ray_job(namespace, rayjob_name)
        except KubeApiError as exc:
            log.info("not stopping Ray job %s through the dashboard: %s", rayjob_name, exc)
            return
        if cluster is None:
            return  # no cluster, no Ray job
        submission = submission_id(rayjob, rayjob_name)
        failed = await stop_job(self.session, self._dashboard(namespace, cluster, cluster_name), submission,
                                self.config.dashboard_timeout)
        if failed:
            log.info("could not stop Ray job %s through the dashboard: %s", submission, failed)
        else:
            log.info("asked the Ray dashboard to stop Ray job %s", submission)
