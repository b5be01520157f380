"""Incremental runs: skip files whose content and extractor versions are already in the sink.

When every item of a file is written, the driver records the file in `<collection>__prism_files`:
{uri, content_hash, items, run_key}, with id uuid5(uri). `run_key` hashes everything that shapes the
points: the preprocess settings and each extractor's kind, version and options. The next run looks
the records up by id for every listed uri (batched retrieves, no scan) and hands each file's
recorded hash to its read task, which hashes the fetched bytes and skips the decode on a match.
So a re-run reads bytes but decodes nothing; the listing gives no content fingerprint (size alone
would miss same-size edits), and the bytes must be hashed anyway to name the points.

A file whose hash changed gets its old points deleted once its new points are written.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from prism_api import ExtractionJobSpec
from prism_api.conventions import files_collection
from prism_pipeline.extractors import Extractor

from .sink.server import call_with_retries

RETRIEVE_CHUNK = 256


def record_id(uri: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "prism:file:" + uri))


def run_key(spec: ExtractionJobSpec, extractors: list[Extractor]) -> str:
    blob = json.dumps({
        "preprocess": spec.preprocess.to_wire(),
        "extractors": sorted([ex.name, ex.spec.kind, ex.fingerprint()] for ex in extractors),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def recorded(client: Any, collection: str, uris: list[str]) -> dict[str, dict[str, Any]]:
    """uri -> its file record (content_hash, run_key, items), for the uris that have one."""
    name = files_collection(collection)
    if not client.collection_exists(name):
        return {}
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(uris), RETRIEVE_CHUNK):
        chunk = uris[start:start + RETRIEVE_CHUNK]
        ids = [record_id(u) for u in chunk]
        for point in call_with_retries(lambda ids=ids: client.retrieve(name, ids=ids, with_payload=True),
                                       f"reading file records from {name!r}"):
            payload = point.payload or {}
            if payload.get("uri"):
                found[payload["uri"]] = payload
    return found


def previous_hashes(records: dict[str, dict[str, Any]], key: str) -> dict[str, str]:
    """The hashes a read task may skip on: only records written with the same run key."""
    return {uri: r["content_hash"] for uri, r in records.items() if r.get("run_key") == key}


def write_records(client: Any, collection: str, files: list[tuple[str, str, int]], key: str) -> None:
    """Record finished files: (uri, content_hash, item count)."""
    from qdrant_client import models as qm

    if not files:
        return
    points = [qm.PointStruct(id=record_id(uri), vector={},
                             payload={"uri": uri, "content_hash": h, "items": n, "run_key": key})
              for uri, h, n in files]
    call_with_retries(lambda: client.upsert(files_collection(collection), wait=True, points=points),
                      f"recording {len(points)} finished files")


def delete_stale(client: Any, collection: str, uri: str, content_hash: str) -> None:
    """Drop the points of earlier versions of a file (same uri, other content)."""
    from qdrant_client import models as qm

    selector = qm.FilterSelector(filter=qm.Filter(
        must=[qm.FieldCondition(key="uri", match=qm.MatchValue(value=uri))],
        must_not=[qm.FieldCondition(key="content_hash", match=qm.MatchValue(value=content_hash))],
    ))
    call_with_retries(lambda: client.delete(collection, wait=True, points_selector=selector),
                      f"deleting old points of {uri}")
