"""File records for incremental runs, in `<collection>__prism_files`.

When every item of a file is written, the driver records the file: {uri, content_hash, items,
run_key}, with id uuid5(uri), so the next run looks the records up by id for every listed uri
(batched retrieves, no scan). A file whose content changed gets its old points deleted once its new
points are written (its points' ids derive from the content hash, so they differ).
"""

from __future__ import annotations

import uuid
from typing import Any

from prism_api.conventions import files_collection

from .retries import ATTEMPTS, call_with_retries

RETRIEVE_CHUNK = 256


def record_id(uri: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "prism:file:" + uri))


def read_records(client: Any, collection: str, uris: list[str],
                 attempts: int = ATTEMPTS) -> dict[str, dict[str, Any]]:
    """uri -> its file record (content_hash, run_key, items), for the uris that have one."""
    name = files_collection(collection)
    if not call_with_retries(lambda: client.collection_exists(name), f"looking up {name!r}", attempts=attempts):
        return {}
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(uris), RETRIEVE_CHUNK):
        ids = [record_id(u) for u in uris[start:start + RETRIEVE_CHUNK]]
        for point in call_with_retries(lambda ids=ids: client.retrieve(name, ids=ids, with_payload=True),
                                       f"reading file records from {name!r}", attempts=attempts):
            payload = point.payload or {}
            if payload.get("uri"):
                found[payload["uri"]] = payload
    return found


def write_records(client: Any, collection: str, files: list[tuple[str, str, int]], run_key: str,
                  attempts: int = ATTEMPTS) -> None:
    """Record finished files: (uri, content_hash, item count)."""
    from qdrant_client import models as qm

    if not files:
        return
    points = [qm.PointStruct(id=record_id(uri), vector={},
                             payload={"uri": uri, "content_hash": h, "items": n, "run_key": run_key})
              for uri, h, n in files]
    call_with_retries(lambda: client.upsert(files_collection(collection), wait=True, points=points),
                      f"recording {len(points)} finished files", attempts=attempts)


def delete_stale(client: Any, collection: str, uri: str, content_hash: str, attempts: int = ATTEMPTS) -> None:
    """Drop the points of earlier versions of a file (same uri, other content)."""
    from qdrant_client import models as qm

    selector = qm.FilterSelector(filter=qm.Filter(
        must=[qm.FieldCondition(key="uri", match=qm.MatchValue(value=uri))],
        must_not=[qm.FieldCondition(key="content_hash", match=qm.MatchValue(value=content_hash))],
    ))
    call_with_retries(lambda: client.delete(collection, wait=True, points_selector=selector),
                      f"deleting old points of {uri}", attempts=attempts)
