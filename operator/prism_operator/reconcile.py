"""One reconcile of one ExtractionJob: observe -> derive (pure) -> act -> write status (the one place).

Every handler (create, resume, spec update, timer) runs this same level-triggered function, so a
restarted operator or a repeated call converges on the same children: names are deterministic and
creating an object that exists is a no-op.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import ValidationError

from prism_pipeline.spec import ExtractionJob, ExtractionJobStatus, Phase, SpecError, parse_job

from . import metrics
from .builders import build_ray_cluster, build_ray_job
from .builders.raycluster import cluster_name_for
from .builders.rayjob import rayjob_name_for
from .k8s_api import KubeApi, KubeApiError
from .progress_client import ProgressSnapshot, fetch_progress, progress_url
from .settings import OperatorConfig
from .status.derive import cluster_state, derive
from .status.model import (
    CreateCluster,
    CreateRayJob,
    Decision,
    DeleteCluster,
    Observed,
    StopRayJob,
    SuspendCluster,
)
from .status.patch import merge_patch
from .status.pods import pod_problems

log = logging.getLogger(__name__)
MANIFEST_KEYS = ("apiVersion", "kind", "metadata", "spec")


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
class Reconciler:
    api: KubeApi
    session: aiohttp.ClientSession
    config: OperatorConfig

    async def observe(self, body: Any, old: ExtractionJobStatus, now: datetime) -> Observed:
        meta = body.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        manifest = {k: body[k] for k in MANIFEST_KEYS if k in body}
        try:
            job: ExtractionJob = parse_job(manifest, target="cluster")
        except SpecError as exc:
            return Observed(job=None, old=old, now=now, generation=meta.get("generation"),
                            spec_errors=tuple(str(e) for e in exc.errors))
        cluster_name = cluster_name_for(job)
        rayjob_name = rayjob_name_for(job, old.attempt) if old.attempt else ""
        cluster = await self.api.get_ray_cluster(namespace, cluster_name)
        rayjob = await self.api.get_ray_job(namespace, rayjob_name) if rayjob_name else None
        problems: list[str] = []
        live = not old.phase.is_terminal() and old.phase != Phase.SUSPENDED
        if cluster is not None and live and cluster_state(cluster) != "ready":
            problems = pod_problems(await self.api.list_cluster_pods(namespace, cluster_name))
        progress = None
        if cluster is not None and cluster_state(cluster) != "suspended":
            progress = await self._read_progress(namespace, head_service(cluster, cluster_name), old.phase)
        return Observed(
            job=job, old=old, now=now, generation=meta.get("generation"),
            cluster_name=cluster_name, owns_cluster=not job.spec.cluster.existing, cluster=cluster,
            rayjob=rayjob, rayjob_name=rayjob_name, pod_problems=tuple(problems), progress=progress,
        )

    async def _read_progress(self, namespace: str, service: str, phase: Phase) -> ProgressSnapshot | None:
        url = progress_url(self.config.progress_url_template, namespace, service)
        reading = await fetch_progress(self.session, url, self.config.progress_timeout)
        if reading.error:
            # Expected while the head starts or between attempts; worth a line once running.
            level = logging.INFO if phase == Phase.RUNNING else logging.DEBUG
            log.log(level, "progress endpoint not readable: %s", reading.error)
        return reading.snapshot

    async def act(self, decision: Decision, job: ExtractionJob | None, namespace: str) -> list[str]:
        """Carry out the decided actions; returns the errors (the next reconcile retries them)."""
        errors: list[str] = []
        for action in decision.actions:
            try:
                match action:
                    case CreateCluster():
                        if await self.api.create(build_ray_cluster(job)):
                            log.info("created RayCluster %s", job and cluster_name_for(job))
                    case CreateRayJob(attempt=attempt):
                        if await self.api.create(build_ray_job(job, attempt)):
                            log.info("created RayJob %s", rayjob_name_for(job, attempt))
                    case StopRayJob(name=name):
                        if await self.api.delete_ray_job(namespace, name):
                            log.info("deleted RayJob %s (stops the Ray job)", name)
                    case SuspendCluster(suspend=suspend):
                        await self.api.suspend_ray_cluster(namespace, cluster_name_for(job), suspend)
                    case DeleteCluster(name=name):
                        if await self.api.delete_ray_cluster(namespace, name):
                            log.info("deleted RayCluster %s", name)
            except KubeApiError as exc:
                errors.append(str(exc))
                log.warning("%s failed: %s", type(action).__name__, exc)
        return errors

    async def reconcile(self, body: Any, patch: dict, last: ExtractionJobStatus | None = None,
                        now: datetime | None = None) -> Outcome:
        """`last` is the status this process derived last time, if any: the body kopf hands over may
        predate that status's patch, and deriving from it would repeat the last step's actions."""
        started = time.monotonic()
        now = now or datetime.now(UTC)
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        old = last if last is not None else old_status(body)
        try:
            observed = await self.observe(body, old, now)
        except KubeApiError as exc:
            metrics.RECONCILE_ERRORS.inc()
            return Outcome(old, [f"observing the children: {exc}"])
        decision = derive(observed)
        errors = await self.act(decision, observed.job, namespace)
        for event in decision.events:
            self.api.post_event(body, event.type, event.reason, event.message)
        write_status(patch, body, decision.status)
        if errors:
            metrics.RECONCILE_ERRORS.inc()
        metrics.observe_job(namespace, name, decision.status)
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        return Outcome(decision.status, errors)

    async def delete(self, body: Any) -> None:
        """Finalizer: stop the current attempt's Ray job; owner references remove the rest."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        old = old_status(body)
        manifest = {k: body[k] for k in MANIFEST_KEYS if k in body}
        try:
            job = parse_job(manifest, target="cluster")
        except SpecError:
            job = None  # an invalid job never created children
        if job is not None and old.attempt:
            rayjob = rayjob_name_for(job, old.attempt)
            if await self.api.delete_ray_job(namespace, rayjob):
                log.info("deleted RayJob %s: the Ray job is stopped", rayjob)
        metrics.forget_job(namespace, name)
