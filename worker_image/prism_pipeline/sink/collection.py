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
    """Create the collections if missing; check an existing one was written by these extractors
    (its record) and has the vectors this job writes. Nothing is written before both checks pass."""
    from qdrant_client import models as qm

    wanted = vector_params(extractors)
    recorded = read_meta(client, name, attempts)
    if recorded is not None:
        differences = record_differences(recorded.get("extractors") or [], extractors)
        if differences:
            raise CollectionError(refusal(name, differences, server))
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


RECORDED_FIELDS = ("kind", "version", "output")  # what makes an extractor's points another extractor's


def describe(entry: dict[str, Any]) -> str:
    """One recorded extractor, for messages: `'text' (text-embedding, version V, output vector)`."""
    return (f"{entry.get('name')!r} ({entry.get('kind')}, version {entry.get('version')}, "
            f"output {entry.get('output')})")


def _entry(ex: Extractor) -> dict[str, Any]:
    return {"name": ex.name, "kind": ex.spec.kind, "model": ex.spec.model, "version": ex.version,
            "options": ex.options, "output": ex.output.kind,
            "size": ex.output.size if isinstance(ex.output, Vector) else None}


def record_differences(recorded: list[dict[str, Any]], extractors: list[Extractor]) -> list[str]:
    """How this job's extractors differ from a collection's record: extractors added, removed, or
    of another kind, version or output under the same name (options may differ: the points are
    rewritten in the same vectors). Empty when the job may write the collection."""
    have = {e.get("name"): e for e in recorded}
    want = {ex.name: _entry(ex) for ex in extractors}
    found = []
    for n, e in have.items():
        if n not in want:
            found.append(f"extractor {describe(e)} is recorded but not in this job")
    for n, e in want.items():
        if n not in have:
            found.append(f"extractor {describe(e)} is in this job but not recorded")
        elif any(have[n].get(f) != e[f] for f in RECORDED_FIELDS):
            found.append(f"extractor {n!r}: recorded {describe(have[n])}, this job {describe(e)}")
    return found


def refusal(name: str, differences: list[str], server: bool) -> str:
    delete = (f"delete it and its companion {files_collection(name)!r} through the Qdrant API "
              f"(DELETE /collections/{name} and /collections/{files_collection(name)}, or "
              f"`prism collections delete {name} --yes --url URL`)" if server
              else f"delete it with `prism collections delete {name} --yes`")
    return (f"spec.sink.qdrant.collection: {name!r} was written by other extractors than this job's, and "
            f"writing it would overwrite or orphan their points: {'; '.join(differences)}. Nothing was "
            f"written. Write to a new collection (spec.sink.qdrant.collection), run the job with the "
            f"recorded extractors, or {delete}")


def _index(client: Any, name: str, missing: Iterable[str]) -> None:
    """Keyword indexes: on uri (the incremental cleanup deletes a changed file's old points by uri)
    and on failed_extractors (filters for the items to reprocess). Embedded Qdrant has no payload
    indexes; it scans."""
    from qdrant_client import models as qm

    for key in missing:
        client.create_payload_index(name, key, field_schema=qm.PayloadSchemaType.KEYWORD)


def write_meta(client: Any, name: str, extractors: list[Extractor], attempts: int = ATTEMPTS) -> None:
    from qdrant_client import models as qm

    meta = {"prism_meta": True, "extractors": [_entry(ex) for ex in extractors]}
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
