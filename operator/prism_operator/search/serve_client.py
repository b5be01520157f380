"""Reading a running SearchService application: what it serves (`GET /info` on the Serve endpoint) and
how many Serve replicas run (the Ray dashboard's Serve API, `GET /api/serve/applications/`).

One bounded HTTP request per call and no retries here: the reconciler reads only while the service is
Ready and only what it does not know yet. Failures come back as results, never as exceptions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp
from pydantic import ValidationError

from prism_api.search_service import ROUTE_INFO, SERVE_APP_NAME, ServiceInfo

MAX_BODY_BYTES = 1024 * 1024
SERVE_APPLICATIONS_PATH = "/api/serve/applications/"


@dataclass(frozen=True)
class InfoReading:
    info: ServiceInfo | None
    error: str = ""  # why there is no info


@dataclass(frozen=True)
class ReplicaReading:
    running: int | None  # Serve replicas in state RUNNING over the application's deployments
    error: str = ""


def serve_url(template: str, namespace: str, service: str, port: int) -> str:
    return template.format(namespace=namespace, service=service, port=port).rstrip("/")


async def _get_json(session: aiohttp.ClientSession, url: str, timeout: float) -> tuple[object, str]:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                return None, f"{url}: HTTP {response.status}"
            body = await response.content.read(MAX_BODY_BYTES + 1)
    except TimeoutError:
        return None, f"{url}: no answer within {timeout:g}s"
    except aiohttp.ClientError as exc:
        return None, f"{url}: {type(exc).__name__}: {exc}"
    if len(body) > MAX_BODY_BYTES:
        return None, f"{url}: answer larger than {MAX_BODY_BYTES} bytes"
    try:
        return json.loads(body), ""
    except ValueError:
        return None, f"{url}: not JSON"


async def read_info(session: aiohttp.ClientSession, base: str, timeout: float) -> InfoReading:
    """`GET <base>/info`: the collection and the model versions the application loaded."""
    url = base + ROUTE_INFO
    doc, error = await _get_json(session, url, timeout)
    if error:
        return InfoReading(None, error)
    try:
        return InfoReading(ServiceInfo.model_validate(doc))
    except ValidationError as exc:
        return InfoReading(None, f"{url}: not the application's /info: {exc.errors()[0].get('msg', exc)}")


def running_replicas(doc: object, app: str = SERVE_APP_NAME) -> int | None:
    """RUNNING replicas over the deployments of `app` in the dashboard's Serve answer (None: no such app)."""
    if not isinstance(doc, dict):
        return None
    application = (doc.get("applications") or {}).get(app)
    if not isinstance(application, dict):
        return None
    total = 0
    for deployment in (application.get("deployments") or {}).values():
        replicas = deployment.get("replicas") if isinstance(deployment, dict) else None
        total += sum(1 for r in replicas or [] if isinstance(r, dict) and r.get("state") == "RUNNING")
    return total


async def read_replicas(session: aiohttp.ClientSession, dashboard: str, timeout: float) -> ReplicaReading:
    url = dashboard + SERVE_APPLICATIONS_PATH
    doc, error = await _get_json(session, url, timeout)
    if error:
        return ReplicaReading(None, error)
    count = running_replicas(doc)
    if count is None:
        return ReplicaReading(None, f"{url}: no application {SERVE_APP_NAME!r}")
    return ReplicaReading(count)
