"""A schedule's runs: the ExtractionJob manifest of one run (pure), and a run read back from the
ExtractionJob the operator's index holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prism_api import API_VERSION, KIND, Phase
from prism_api.conventions import MANAGED_BY
from prism_api.cron_job import CRON_KIND, CRON_LABEL, SCHEDULED_TIME_ANNOTATION, run_name

from ..status.clock import parse_time, rfc3339
from .schedule import Run


def build_run(cron: dict[str, Any], scheduled: datetime) -> dict[str, Any]:
    """The ExtractionJob of the run scheduled at `scheduled`, from the ExtractionCronJob `cron` (its
    body as the API server returned it: the template exactly as the user wrote it, defaults applied
    by the API server). Owned by the schedule, so deleting the schedule deletes its runs."""
    meta = cron["metadata"]
    template = cron["spec"]["jobTemplate"]
    tmeta = template.get("metadata") or {}
    name = run_name(meta["name"], scheduled)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {**(tmeta.get("labels") or {}), CRON_LABEL: meta["name"],
                       "app.kubernetes.io/managed-by": MANAGED_BY},
            "annotations": {**(tmeta.get("annotations") or {}), SCHEDULED_TIME_ANNOTATION: rfc3339(scheduled)},
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": CRON_KIND, "name": meta["name"], "uid": meta["uid"],
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": template["spec"],
    }


def run_from(name: str, annotations: dict[str, str] | None, status: dict[str, Any] | None) -> Run:
    status = status or {}
    try:
        phase = Phase(status.get("phase") or Phase.PENDING.value)
    except ValueError:
        phase = Phase.PENDING
    return Run(name=name, phase=phase,
               scheduled=parse_time((annotations or {}).get(SCHEDULED_TIME_ANNOTATION)),
               completed=parse_time(status.get("completionTime")))
