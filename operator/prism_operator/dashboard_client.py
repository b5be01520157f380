"""The Ray dashboard's job API, for fencing attempts: read a submission's status and stop it.

KubeRay can mark a RayJob Failed while its Ray job still runs, and in clusterSelector mode it never
stops that job; so before the next attempt (and when a job fails, is suspended or deleted) the
operator stops the old attempt through the dashboard and waits until Ray says it has stopped.

One bounded HTTP request per call and no retries here: the next reconcile is the retry. Failures
come back as results, never as exceptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

# Ray's JobStatus values after which the job's driver is gone.
TERMINAL_STATUSES = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class RayJobState:
    """What the dashboard said about one submission."""

    status: str = ""   # Ray's JobStatus (PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED); "" if none
    found: bool = True  # False: the dashboard has no such job (never submitted, or a new head)
    error: str = ""    # the dashboard could not be read: nothing is known

    @property
    def stopped(self) -> bool:
        """Known not to run: absent, or in a terminal state."""
        return not self.error and (not self.found or self.status in TERMINAL_STATUSES)


def dashboard_url(template: str, namespace: str, service: str) -> str:
    return template.format(namespace=namespace, service=service).rstrip("/")


def _job_url(base: str, submission_id: str) -> str:
    return f"{base}/api/jobs/{quote(submission_id, safe='')}"


async def get_job_state(session: aiohttp.ClientSession, base: str, submission_id: str,
                        timeout: float) -> RayJobState:
    """`GET /api/jobs/<id>`: the submission's status; 404 means no such job."""
    url = _job_url(base, submission_id)
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status == 404:
                return RayJobState(found=False)
            if response.status != 200:
                return RayJobState(error=f"{url}: HTTP {response.status}")
            body = await response.content.read(MAX_BODY_BYTES + 1)
    except TimeoutError:
        return RayJobState(error=f"{url}: no answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return RayJobState(error=f"{url}: {type(exc).__name__}: {exc}")
    try:
        status = json.loads(body[:MAX_BODY_BYTES]).get("status")
    except (ValueError, AttributeError):
        return RayJobState(error=f"{url}: not a Ray job description")
    if not isinstance(status, str) or not status:
        return RayJobState(error=f"{url}: no status in the answer")
    return RayJobState(status=status.upper())


async def stop_job(session: aiohttp.ClientSession, base: str, submission_id: str, timeout: float) -> str:
    """`POST /api/jobs/<id>/stop`: ask Ray to stop the submission. Returns "" when asked (or when
    there is no such job), else why not."""
    url = _job_url(base, submission_id) + "/stop"
    try:
        async with session.post(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status in (200, 404):
                return ""
            return f"{url}: HTTP {response.status}"
    except TimeoutError:
        return f"{url}: no answer within {timeout:g}s"
    except aiohttp.ClientError as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
