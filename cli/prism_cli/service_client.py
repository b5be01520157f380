"""`prism search` through a running `prism serve`: find the service the state dir records and send it
the queries (POST /search), instead of opening the embedded store it holds locked.

Standard library and prism_api only: a search through the service imports neither Ray nor a model.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from prism_api.search_service import (
    ROUTE_INFO,
    ROUTE_SEARCH,
    ErrorBody,
    LocalServiceRecord,
    SearchHit,
    SearchRequest,
    SearchResponse,
    ServiceInfo,
    local_service_path,
)

PROBE_TIMEOUT_S = 1.0    # GET /info: a service that does not answer this fast is not used
SEARCH_TIMEOUT_S = 60.0  # one POST /search (the models are loaded; a batch job beside may slow it)
MAX_BODY = 16 * 2**20


class ServiceError(Exception):
    """The service was found but the search through it failed; the message says why."""


@dataclass
class ServiceResult:
    """One query's answer, shaped like prism_pipeline.search.SearchResult for the table and --json."""

    hits: list[SearchHit]
    vector: str
    warnings: list[str] = field(default_factory=list)


def find_service(state_dir: str | Path, collection: str, url: str | None = None) -> LocalServiceRecord | None:
    """The running service recorded for `collection` under `state_dir` that reads the same store (the
    embedded one, or the Qdrant server `url`), if its process is alive and GET /info answers within
    PROBE_TIMEOUT_S naming the collection. A record whose process is gone is stale: removed."""
    path = Path(local_service_path(state_dir, collection))
    try:
        record = LocalServiceRecord.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    if not _alive(record.pid):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    if (record.qdrant_url or None) != (url or None) or record.collection != collection:
        return None
    try:
        info = ServiceInfo.model_validate(_get_json(record.url + ROUTE_INFO, PROBE_TIMEOUT_S))
    except (OSError, ValueError):
        return None
    return record if info.collection == collection else None


def search(record: LocalServiceRecord, request: SearchRequest) -> ServiceResult:
    """POST /search; ServiceError with the service's own message on a 4xx/5xx or no answer."""
    body = json.dumps(request.to_wire()).encode()
    req = urllib.request.Request(record.url + ROUTE_SEARCH, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=SEARCH_TIMEOUT_S) as response:
            answer = SearchResponse.model_validate(json.loads(response.read(MAX_BODY)))
    except urllib.error.HTTPError as err:
        raise ServiceError(f"the service at {record.url} refused the search: {_error_text(err)}") from err
    except (OSError, ValueError) as err:  # no answer, a timeout, or not a SearchResponse
        raise ServiceError(f"the service at {record.url} (process {record.pid}) did not answer the search "
                           f"({' '.join(str(err).split())[:300]}); retry, or pass --no-service once it has "
                           "stopped") from err
    return ServiceResult(list(answer.hits), answer.vector)


def _get_json(url: str, timeout_s: float):
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read(MAX_BODY))


def _error_text(err: urllib.error.HTTPError) -> str:
    """The ErrorBody's message (and field), else the status line."""
    try:
        body = ErrorBody.model_validate(json.loads(err.read(MAX_BODY)))
    except (OSError, ValueError, ValidationError):
        return f"HTTP {err.code} {err.reason}"
    named = body.field and not body.error.startswith(body.field)
    return f"{body.field + ': ' if named else ''}{body.error} (HTTP {err.code})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
