"""Collections: the points collection (one named vector per embedding extractor) and its companion
`<collection>__prism_files` (one vector-less record per finished file, for incremental runs, plus
a record describing the extractors, which `prism search` reads to embed queries the same way)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from prism_api.conventions import files_collection
from prism_api.point_payload import KEYWORD_INDEXES
from prism_pipeline.extractors import Extractor, Vector

from .retries import ATTEMPTS, call_with_retries

META_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "prism:collection-meta"))


class CollectionError(Exception):
    """The collection exists with a shape this job cannot write to."""


def vector_params(extractors: list[Extractor]) -> dict[str, Vector]:
    return {ex.name: ex.output for ex in extractors if isinstance(ex.output, Vector)}


def ensure_collections(client: Any, name: str, extractors: list[Extractor], server: bool = True,
                       attempts: int = ATTEMPTS) -> None:
    """Create the collections if missing; check an existing one has the vectors this job writes."""
    from qdrant_client import models as qm

    wanted = vector_params(extractors)
    if not client.collection_exists(name):
        client.create_collection(name, vectors_config={
            n: qm.VectorParams(size=v.size, distance=qm.Distance(v.distance)) for n, v in wanted.items()
        })
        if server:
            _index(client, name, missing=KEYWORD_INDEXES)
    else:
        info = client.get_collection(name)
        have = info.config.params.vectors or {}
        if not isinstance(have, dict):
            raise CollectionError(f"spec.sink.qdrant.collection: {name!r} exists with a single unnamed vector; "
                                  "Prism writes named vectors (one per extractor): use another collection")
        problems = []
        for n, v in wanted.items():
            if n not in have:
                problems.append(f"no vector {n!r}")
            elif have[n].size != v.size:
                problems.append(f"vector {n!r} has size {have[n].size}, extractor {n!r} produces {v.size}")
        if problems:
            raise CollectionError(
                f"spec.sink.qdrant.collection: {name!r} exists but does not fit this job ({'; '.join(problems)}); "
                "write to a new collection or delete this one (Qdrant cannot add or resize named vectors)")
        if server:  # a collection written by an older Prism lacks the newer indexes
            _index(client, name, missing=[k for k in KEYWORD_INDEXES if k not in (info.payload_schema or {})])
    files = files_collection(name)
    if not client.collection_exists(files):
        client.create_collection(files, vectors_config={})
    write_meta(client, name, extractors, attempts)


def _index(client: Any, name: str, missing: Iterable[str]) -> None:
    """Keyword indexes: on uri (the incremental cleanup deletes a changed file's old points by uri)
    and on failed_extractors (filters for the items to reprocess). Embedded Qdrant has no payload
    indexes; it scans."""
    from qdrant_client import models as qm

    for key in missing:
        client.create_payload_index(name, key, field_schema=qm.PayloadSchemaType.KEYWORD)


def write_meta(client: Any, name: str, extractors: list[Extractor], attempts: int = ATTEMPTS) -> None:
    from qdrant_client import models as qm

    meta = {"prism_meta": True, "extractors": [
        {"name": ex.name, "kind": ex.spec.kind, "model": ex.spec.model, "version": ex.version,
         "options": ex.options, "output": ex.output.kind,
         "size": ex.output.size if isinstance(ex.output, Vector) else None}
        for ex in extractors
    ]}
    call_with_retries(lambda: client.upsert(files_collection(name), wait=True,
                                            points=[qm.PointStruct(id=META_ID, vector={}, payload=meta)]),
                      f"writing the extractor record of {name!r}", attempts=attempts)


def read_meta(client: Any, name: str, attempts: int = ATTEMPTS) -> dict[str, Any] | None:
    """The extractor record of collection `name`, or None when it is not a Prism collection."""
    files = files_collection(name)

    def read() -> dict[str, Any] | None:
        if not (client.collection_exists(name) and client.collection_exists(files)):
            return None
        found = client.retrieve(files, ids=[META_ID], with_payload=True)
        return found[0].payload if found else None

    return call_with_retries(read, f"reading the extractor record of {name!r}", attempts=attempts)


def point_collections(client: Any, attempts: int = ATTEMPTS) -> list[str]:
    """The collections holding points (not Prism's companion `__prism_*` ones)."""
    found = call_with_retries(lambda: client.get_collections().collections, "listing collections",
                              attempts=attempts)
    return [c.name for c in found if "__prism" not in c.name]
