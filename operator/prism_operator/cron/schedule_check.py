"""One check of one ExtractionCronJob: validate, decide (schedule.py), then create and delete runs
and write the status (only the fields that changed). The runs come from the operator's index of
ExtractionJobs (kept by kopf's watch), so an idle schedule costs no API request."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from prism_api import SpecError
from prism_api.cron_job import ExtractionCronJobStatus, parse_cron_job, run_name

from ..k8s_api import KubeApi, KubeApiError, NamespaceTerminating
from ..status.clock import parse_time
from ..status.model import Event
from ..status.patch import merge_patch
from .runs import build_run
from .schedule import CronDecision, Run, decide_cron

log = logging.getLogger(__name__)

MANIFEST_KEYS = ("apiVersion", "kind", "metadata", "spec")


def _old_status(body: Any) -> ExtractionCronJobStatus:
    raw = dict(body.get("status") or {})
    known = set(ExtractionCronJobStatus.model_fields) | {f.alias for f in ExtractionCronJobStatus.model_fields.values()
                                                           if f.alias}
    try:
        return ExtractionCronJobStatus.model_validate({k: v for k, v in raw.items() if k in known})
    except ValueError:
        return ExtractionCronJobStatus()


def decide(body: Any, runs: list[Run], now: datetime) -> CronDecision:
    """The decision for `body` (pure): an invalid spec creates nothing and says why in status."""
    meta = body.get("metadata") or {}
    old = _old_status(body)
    try:
        cron = parse_cron_job({k: body[k] for k in MANIFEST_KEYS if k in body})
    except SpecError as exc:
        message = "; ".join(str(e) for e in exc.errors)
        status = old.model_copy(update={"reason": "InvalidSpec", "message": message[:32_000],
                                        "next_schedule_time": None, "observed_generation": meta.get("generation")})
        events = () if old.reason == "InvalidSpec" and old.message == status.message else (
            Event("Warning", "InvalidSpec", message),)
        return CronDecision(status=status, events=events)
    created = parse_time(meta.get("creationTimestamp")) or now
    return decide_cron(cron.metadata.name, cron.spec, old, runs, now, created, meta.get("generation"))


async def reconcile_cron(api: KubeApi, body: Any, patch: Any, runs: list[Run],
                         now: datetime | None = None) -> list[str]:
    """Carry out one decision; returns the API errors (the next check retries them)."""
    now = now or datetime.now(UTC)
    decision = decide(body, runs, now)
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    errors: list[str] = []
    status = decision.status
    try:
        for name in decision.delete:
            if await api.delete_extraction_job(namespace, name):
                log.info("deleted run %s/%s", namespace, name)
        if decision.create is not None:
            if await api.create_extraction_job(build_run(dict(body), decision.create)):
                log.info("created run %s/%s", namespace, run_name(meta["name"], decision.create))
    except NamespaceTerminating:
        return []
    except KubeApiError as exc:
        errors.append(str(exc))
        # Not created: the status must not claim it, so the next check tries the same time again.
        status = _old_status(body).model_copy(update={"reason": "ApiError", "message": str(exc)[:2000]})
    diff = merge_patch(dict(body.get("status") or {}), status.to_wire())
    if diff:
        patch.setdefault("status", {}).update(diff)
    for event in decision.events if not errors else ():
        KubeApi.post_event(body, event.type, event.reason, event.message)
    return errors
