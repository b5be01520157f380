"""One reconcile of one SearchService: observe (the RayService from the operator's watch-fed index,
never a GET) -> derive (pure) -> read the running application when derive asks -> act (create or patch
the RayService) -> write status (only the fields that changed; nothing when nothing did).

Deletion needs nothing here: the RayService is owned by the SearchService, and Kubernetes' garbage
collector deletes it (KubeRay's finalizer then deletes its RayCluster).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from pydantic import ValidationError

from prism_api import SpecError
from prism_api.search_service import SERVE_HTTP_PORT, SearchServiceStatus, parse_search_service

from ..builders.rayservice import (
    build_ray_service,
    head_service_name,
    ray_service_patch,
    serve_service_name,
)
from ..dashboard_client import dashboard_url
from ..k8s_api import KubeApi, KubeApiError, NamespaceTerminating
from ..settings import OperatorConfig
from ..status.patch import merge_patch
from .serve_client import read_info, read_replicas, serve_url
from .service_status import CreateRayService, PatchRayService, Probe, SearchObserved, derive

log = logging.getLogger(__name__)
MANIFEST_KEYS = ("apiVersion", "kind", "metadata", "spec")
# A create refused as existing this many times in a row while the index shows no RayService of ours:
# the name is taken by a RayService that is not this SearchService's.
CONFLICT_AFTER = 2
# After creating the RayService, wait this long for the watch to show it before creating it again.
CREATED_WAIT_SECONDS = 30


def old_status(body: Any) -> SearchServiceStatus:
    raw = dict(body.get("status") or {})
    try:
        return SearchServiceStatus.model_validate(raw)
    except ValidationError:
        known = set(SearchServiceStatus.model_fields) | {f.alias for f in SearchServiceStatus.model_fields.values()
                                                         if f.alias}
        try:
            return SearchServiceStatus.model_validate({k: v for k, v in raw.items()
                                                       if k in known and k not in ("conditions", "models")})
        except ValidationError:
            return SearchServiceStatus()


def write_status(patch: dict, body: Any, status: SearchServiceStatus) -> dict:
    """The one place a SearchService's status is written: only the fields that changed."""
    diff = merge_patch(dict(body.get("status") or {}), status.to_wire())
    if diff:
        patch.setdefault("status", {}).update(diff)
    return diff


def pick_rayservice(candidates: list[dict], uid: str | None) -> dict | None:
    """The SearchService's RayService among those labelled with its name: the one it owns, else any
    (an earlier namesake's, awaiting garbage collection)."""
    for rs in candidates:
        if any(o.get("uid") == uid for o in ((rs.get("metadata") or {}).get("ownerReferences") or [])):
            return rs
    return candidates[0] if candidates else None


@dataclass
class SearchMemory:
    """What this process remembers of one SearchService between reconciles (kopf's memo)."""

    last_status: SearchServiceStatus | None = None
    patched: int | None = None   # the generation whose patch was sent (the index may lag behind it)
    probe: Probe | None = None   # the last read of the running application
    refused_creates: int = 0
    created_at: datetime | None = None  # when this process created the RayService


@dataclass(frozen=True)
class Outcome:
    status: SearchServiceStatus
    errors: list[str]


@dataclass
class SearchReconciler:
    api: KubeApi
    session: aiohttp.ClientSession
    config: OperatorConfig

    async def _probe(self, namespace: str, name: str, key: str, now: datetime) -> Probe:
        """Read what the application serves and how many replicas run: two bounded requests."""
        base = serve_url(self.config.serve_url_template, namespace, serve_service_name(name), SERVE_HTTP_PORT)
        info = await read_info(self.session, base, self.config.serve_timeout)
        dashboard = dashboard_url(self.config.dashboard_url_template, namespace, head_service_name(name))
        replicas = await read_replicas(self.session, dashboard, self.config.serve_timeout)
        errors = tuple(e for e in (info.error, replicas.error) if e)
        for error in errors:
            log.info("SearchService %s/%s: %s", namespace, name, error)
        return Probe(key=key, at=now, models=tuple(info.info.models) if info.info else None,
                     replicas=replicas.running, errors=errors)

    async def reconcile(self, body: Any, patch: dict, rayservices: list[dict], memory: SearchMemory | None = None,
                        now: datetime | None = None) -> Outcome:
        now = now or datetime.now(UTC)
        memory = memory if memory is not None else SearchMemory()
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta.get("name", "")
        old = memory.last_status if memory.last_status is not None else old_status(body)
        generation = meta.get("generation")
        try:
            service, errors = parse_search_service({k: body[k] for k in MANIFEST_KEYS if k in body}), ()
        except SpecError as exc:
            service, errors = None, tuple(str(e) for e in exc.errors)
        rayservice = pick_rayservice(rayservices, meta.get("uid"))
        if rayservice is not None:
            memory.refused_creates, memory.created_at = 0, None
        created = memory.created_at is not None and (now - memory.created_at).total_seconds() < CREATED_WAIT_SECONDS
        conflict = ""
        if rayservice is None and memory.refused_creates >= CONFLICT_AFTER:
            conflict = (f"a RayService named {name} exists and is not this SearchService's (it lacks the "
                        "prism.dev/search-service label); delete or rename it, or rename the SearchService")
        observed = SearchObserved(service=service, old=old, now=now, name=name, namespace=namespace,
                                  generation=generation, spec_errors=errors, rayservice=rayservice,
                                  uid=meta.get("uid"), patched=memory.patched, conflict=conflict,
                                  probe=memory.probe, created=created)
        decision = derive(observed)
        if decision.wants_probe:
            memory.probe = await self._probe(namespace, name, decision.wants_probe, now)
            decision = derive(dataclasses.replace(observed, probe=memory.probe))
        elif decision.status.phase.value != "Ready":
            memory.probe = None  # read again once Ready again
        failures: list[str] = []
        terminating = False
        try:
            for action in decision.actions:
                match action:
                    case CreateRayService():
                        if await self.api.create(build_ray_service(service)):
                            memory.created_at = now
                            log.info("created RayService %s/%s", namespace, name)
                        else:
                            memory.refused_creates += 1
                    case PatchRayService(generation=gen):
                        if await self.api.patch_ray_service(namespace, name, ray_service_patch(service)):
                            memory.patched = gen
                            log.info("patched RayService %s/%s to generation %s", namespace, name, gen)
        except NamespaceTerminating:
            terminating = True
        except KubeApiError as exc:
            failures.append(str(exc))
            log.warning("SearchService %s/%s: %s", namespace, name, exc)
        if not terminating:
            for event in decision.events:
                KubeApi.post_event(body, event.type, event.reason, event.message)
        write_status(patch, body, decision.status)
        memory.last_status = decision.status
        return Outcome(decision.status, failures)
