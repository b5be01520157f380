"""File records for incremental runs, in `<collection>__prism_files`.

When every item of a file is written, the driver records the file: {uri, content_hash, fingerprint,
items, run_key}, with id uuid5(uri), so the next run looks the records up by id, a listing page at a
time (one retrieve per page, no scan). A file whose content changed gets its old points deleted once its new
points are written (its points' ids derive from the content hash, so they differ).

A file that failed although every item came through (an extractor failed on one of its items) is
recorded too, with `failed_stage`: its hash names its points for that clean-up, but the record is
not complete, so the next incremental run processes the file again; recording it when it next
finishes cleanly rewrites the record without the mark.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from prism_api import point_payload as PP
from prism_api.conventions import files_collection

from .retries import ATTEMPTS, call_with_retries

RETRIEVE_CHUNK = 1000  # ids per retrieve: one listing page
DELETE_CHUNK = 256
SCROLL_PAGE = 1024
FAILED_STAGE = "failed_stage"  # on the record of a file that failed: where (an extractor's name, decode)
FINGERPRINT = "fingerprint"    # the listing's version of the file (sources.FileRef.fingerprint)


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


def write_records(client: Any, collection: str, files: Sequence[tuple], run_key: str,
                  attempts: int = ATTEMPTS) -> None:
    """Record files whose points are written: (uri, content_hash, item count[, failed stage[,
    fingerprint]]), as ledger.Written carries them."""
    from qdrant_client import models as qm

    if not files:
        return
    points = [qm.PointStruct(id=record_id(f[0]), vector={}, payload=_record(run_key, *f[:5])) for f in files]
    call_with_retries(lambda: client.upsert(files_collection(collection), wait=True, points=points),
                      f"recording {len(points)} finished files", attempts=attempts)


def _record(run_key: str, uri: str, content_hash: str, items: int, failed_stage: str = "",
            fingerprint: str = "") -> dict[str, Any]:
    record = {"uri": uri, "content_hash": content_hash, "items": items, "run_key": run_key}
    if failed_stage:
        record[FAILED_STAGE] = failed_stage
    if fingerprint:
        record[FINGERPRINT] = fingerprint
    return record


def delete_stale(client: Any, collection: str, uri: str, content_hash: str, attempts: int = ATTEMPTS) -> None:
    """Drop the points of earlier versions of a file (same uri, other content)."""
    from qdrant_client import models as qm

    selector = qm.FilterSelector(filter=qm.Filter(
        must=[qm.FieldCondition(key=PP.URI, match=qm.MatchValue(value=uri))],
        must_not=[qm.FieldCondition(key=PP.CONTENT_HASH, match=qm.MatchValue(value=content_hash))],
    ))
    call_with_retries(lambda: client.delete(collection, wait=True, points_selector=selector),
                      f"deleting old points of {uri}", attempts=attempts)


def recorded_uris(client: Any, collection: str, attempts: int = ATTEMPTS) -> list[str]:
    """Every uri the collection has a file record of (a scroll of the companion, uri only)."""
    name = files_collection(collection)
    if not call_with_retries(lambda: client.collection_exists(name), f"looking up {name!r}", attempts=attempts):
        return []
    uris, offset = [], None
    while True:
        page, offset = call_with_retries(
            lambda o=offset: client.scroll(name, offset=o, limit=SCROLL_PAGE, with_payload=[PP.URI]),
            f"listing the file records of {name!r}", attempts=attempts)
        uris += [p.payload[PP.URI] for p in page if (p.payload or {}).get(PP.URI)]
        if offset is None or not page:
            return sorted(uris)


def delete_files(client: Any, collection: str, uris: Sequence[str], attempts: int = ATTEMPTS) -> None:
    """Drop every point of these files (a filter on the uri keyword index) and then their records;
    in chunks, points first, so a crash leaves records the next run deletes again."""
    from qdrant_client import models as qm

    for start in range(0, len(uris), DELETE_CHUNK):
        chunk = list(uris[start:start + DELETE_CHUNK])
        selector = qm.FilterSelector(filter=qm.Filter(
            must=[qm.FieldCondition(key=PP.URI, match=qm.MatchAny(any=chunk))]))
        call_with_retries(lambda s=selector: client.delete(collection, wait=True, points_selector=s),
                          f"deleting the points of {len(chunk)} files no longer listed", attempts=attempts)
        ids = qm.PointIdsList(points=[record_id(u) for u in chunk])
        call_with_retries(lambda s=ids: client.delete(files_collection(collection), wait=True, points_selector=s),
                          f"deleting the records of {len(chunk)} files no longer listed", attempts=attempts)
