"""The Qdrant sink, one object for the driver, incremental runs and search.

Two modes, chosen by spec.sink.qdrant.url: server mode (a pool of writer actors upserts over HTTP,
sink/server.py) and embedded mode (the local store under <state dir>/qdrant-edge that `prism run` uses;
the driver is its single writer, sink/embedded.py). Callers see only `Sink`'s methods; the Qdrant
client stays inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from prism_api import QdrantSink
from prism_api.conventions import BATCH_RESOURCE, files_collection
from prism_api.point_payload import URI, failed_filter
from prism_pipeline.extractors import Extractor, Vector

from . import embedded, file_records
from .collection import CollectionError, ensure_collections, point_collections, read_meta
from .embedded import StoreBusyError, StoreMissingError
from .retries import ATTEMPTS, SinkWriteError, call_with_retries
from .server import QdrantWriter, server_client

__all__ = ["CollectionError", "Found", "Sink", "SinkWriteError", "StoreBusyError", "StoreMissingError",
           "point_fields"]

WRITERS_MAX = 4  # Qdrant guidance: 2-4 parallel writers per collection
# The embedded store is in this process: a failure is no network blip, so one retry (as for upserts) is plenty.
EMBEDDED_ATTEMPTS = 2
READ_TIMEOUT_S = 30.0  # a read handle's request timeout (search)
SCROLL_PAGE = 256      # points per scroll request when listing


class Found(NamedTuple):
    """One search result: its score and its point's payload."""

    score: float
    payload: dict[str, Any]


def point_fields(extractors: Sequence[Extractor]) -> dict[str, Any]:
    """What turning item rows into points needs: which outputs are vectors, which go into the
    payload, and each extractor's version (the keyword arguments of the points stage)."""
    return {"vector_names": [ex.name for ex in extractors if isinstance(ex.output, Vector)],
            "payload_names": [ex.name for ex in extractors if not isinstance(ex.output, Vector)],
            "versions": {ex.name: ex.version for ex in extractors}}


class Sink:
    """A job's collection: set-up, the points stage, the driver's writes, file records, search.

    Every Qdrant request has the sink's timeout (server mode) and bounded retries. Use it as a
    context manager, or call `close()`.
    """

    def __init__(self, spec: QdrantSink, extractors: Sequence[Extractor] = (), state_dir: str | Path = ".prism"):
        self.collection = spec.collection
        self._spec = spec
        self._server = bool(spec.url)
        self._state_dir = state_dir
        self._extractors = list(extractors)
        self._attempts = ATTEMPTS if self._server else EMBEDDED_ATTEMPTS
        self._release_store = False
        self._client = (server_client(spec.url, spec.timeout_seconds) if self._server
                        else embedded.embedded_client(state_dir))

    @classmethod
    def open_existing(cls, collection: str, *, url: str | None = None, state_dir: str | Path = ".prism") -> Sink:
        """A read handle (search) on a collection a run wrote: it creates no embedded store where
        there is none (StoreMissingError), and its close() releases the store's lock, so a `prism run`
        can open it next. The name and url are taken as given: the lookups say what is wrong."""
        if not url and not embedded.store_exists(state_dir):
            raise StoreMissingError(f"no embedded store under {state_dir}")
        spec = QdrantSink.model_construct(collection=collection, url=url, timeout_seconds=READ_TIMEOUT_S)
        sink = cls(spec, (), state_dir)
        sink._release_store = not url
        return sink

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the connection (server mode). The embedded store is process-wide, shared by
        the jobs of this process, and stays open (runner closes it after `prism run`) unless this is
        a read handle."""
        if self._server:
            self._client.close()
        elif self._release_store:
            embedded.close_embedded(self._state_dir)

    # -- a run: set-up, the points stage, the driver's writes --------------------------------------

    def prepare(self) -> None:
        """Create the collections if missing, check an existing one fits, record the extractors."""
        ensure_collections(self._client, self.collection, self._extractors, server=self._server,
                           attempts=self._attempts)

    def stage(self, ds: Any, share: float) -> Any:
        """Append the stage that turns item rows into outcome rows (writing them in server mode)."""
        import ray

        fields = point_fields(self._extractors)
        if self._server:
            return ds.map_batches(
                QdrantWriter, batch_size=self._spec.batch_size, num_cpus=0.5, resources={BATCH_RESOURCE: share},
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=WRITERS_MAX),
                fn_constructor_kwargs={"url": self._spec.url, "collection": self.collection,
                                       "timeout_s": self._spec.timeout_seconds, **fields},
            )
        # Per block, not sink.batchSize: the driver batches upserts, and waiting here for a full
        # batch would hold back finished files (and the progress bar) until the stream ends.
        return ds.map_batches(embedded.build_points, batch_size=None, num_cpus=0.25,
                              resources={BATCH_RESOURCE: share}, fn_kwargs=fields)

    def write(self, outcomes: list[dict[str, Any]]) -> int:
        """Driver side, once per batch of the stage's outcome rows: how many points the batch wrote.
        Embedded mode: the driver is the single writer and upserts the points the rows carry, in
        batches of sink.batchSize. Server mode: the writer actors wrote them and marked their rows."""
        if self._server:
            return sum(1 for o in outcomes if o.get("written"))
        points = [o["point"] for o in outcomes if o.get("point") is not None]
        size = self._spec.batch_size
        for start in range(0, len(points), size):
            chunk = points[start:start + size]
            self._call(lambda c=chunk: self._client.upsert(self.collection, points=c, wait=True),
                       f"upsert of {len(chunk)} points into {self.collection!r}")
        return len(points)

    def count(self) -> int:
        """Points in the collection (exact)."""
        return self._call(lambda: self._client.count(self.collection, exact=True).count,
                          f"counting the points of {self.collection!r}")

    # -- incremental runs --------------------------------------------------------------------------

    def records(self, uris: list[str]) -> dict[str, dict[str, Any]]:
        """uri -> its file record (content_hash, run_key, items), for the uris an earlier run finished."""
        return file_records.read_records(self._client, self.collection, uris, self._attempts)

    def record(self, written: Sequence[tuple], run_key: str) -> None:
        """Record files whose points are written, (uri, content_hash, items[, failed_stage]), as
        written by the run `run_key` (ledger.Written; a failed stage makes the record incomplete)."""
        file_records.write_records(self._client, self.collection, written, run_key, self._attempts)

    def delete_stale(self, uri: str, content_hash: str) -> None:
        """Drop the points of earlier versions of a file (same uri, other content)."""
        file_records.delete_stale(self._client, self.collection, uri, content_hash, self._attempts)

    def recorded_uris(self) -> list[str]:
        """Every file the collection has a record of, sorted."""
        return file_records.recorded_uris(self._client, self.collection, self._attempts)

    def delete_missing(self, listed: Sequence[str] | set[str]) -> int:
        """spec.deletedFiles Delete: drop the points and records of every recorded file not in `listed`;
        how many files. An empty listing deletes nothing (a missing mount must not wipe a collection)."""
        if not listed:
            return 0
        keep = listed if isinstance(listed, set | frozenset) else set(listed)
        gone = [uri for uri in self.recorded_uris() if uri not in keep]
        file_records.delete_files(self._client, self.collection, gone, self._attempts)
        return len(gone)

    # -- search ------------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any] | None:
        """The extractors that wrote the collection (name, kind, model, version, options, output,
        size), or None when there is no Prism collection of that name."""
        return read_meta(self._client, self.collection, self._attempts)

    def collections(self) -> list[str]:
        """The point collections of this store or server (for messages naming what is there)."""
        return point_collections(self._client, self._attempts)

    # -- managing collections (`prism collections`) -----------------------------------------------

    def exists(self) -> bool:
        """Whether the points collection exists (a Prism one or not)."""
        return self._call(lambda: self._client.collection_exists(self.collection),
                          f"looking up {self.collection!r}")

    def files_recorded(self) -> int:
        """How many files the companion records (not counting the extractor record)."""
        files = files_collection(self.collection)
        if not self._call(lambda: self._client.collection_exists(files), f"looking up {files!r}"):
            return 0
        total = self._call(lambda: self._client.count(files, exact=True).count, f"counting the records of {files!r}")
        return max(0, total - (1 if self.meta() is not None else 0))

    def delete_collection(self) -> None:
        """Delete the points collection and its companion `<collection>__prism_files`."""
        for name in (self.collection, files_collection(self.collection)):
            self._call(lambda n=name: self._client.delete_collection(n), f"deleting collection {name!r}")

    def file_points(self, uri: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """One file's record (None when there is none) and the payloads of its points, without vectors."""
        from qdrant_client import models as qm

        record = self.records([uri]).get(uri)
        where = qm.Filter(must=[qm.FieldCondition(key=URI, match=qm.MatchValue(value=uri))])
        found, offset = [], None
        while True:
            page, offset = self._call(
                lambda o=offset: self._client.scroll(self.collection, scroll_filter=where, offset=o, limit=SCROLL_PAGE,
                                                     with_payload=True, with_vectors=False),
                f"listing the points of {uri} in {self.collection!r}")
            found += [p.payload or {} for p in page]
            if offset is None or not page:
                return record, found

    def search(self, vector_name: str, query_vector: list[float], limit: int, where: Any = None,
               offset: int = 0) -> list[Found]:
        """The `limit` points nearest `query_vector` by the named vector, best first; only those
        meeting `where` (a qdrant_client Filter, e.g. prism_pipeline.serve.filters.to_qdrant's),
        after skipping the first `offset`."""
        found = self._call(lambda: self._client.query_points(self.collection, query=query_vector,
                                                             using=vector_name, limit=limit, offset=offset or None,
                                                             query_filter=where, with_payload=True).points,
                           f"searching {self.collection!r}")
        return [Found(float(p.score), p.payload or {}) for p in found]

    def failed_points(self, extractor: str | None = None, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Payloads of up to `limit` points an extractor failed on (`extractor`, or any), and how many
        such points there are (prism_api.point_payload.failed_filter)."""
        from qdrant_client import models as qm

        where = qm.Filter.model_validate(failed_filter(extractor))
        total = self._call(lambda: self._client.count(self.collection, count_filter=where, exact=True).count,
                           f"counting the points of {self.collection!r} with failed extractors")
        found, offset = [], None
        while len(found) < min(limit, total):
            size = min(SCROLL_PAGE, limit - len(found))
            page, offset = self._call(
                lambda o=offset, n=size: self._client.scroll(self.collection, scroll_filter=where, offset=o,
                                                             limit=n, with_payload=True),
                f"listing the points of {self.collection!r} with failed extractors")
            found += [p.payload or {} for p in page]
            if offset is None or not page:
                break
        return found, total

    def _call(self, call: Any, what: str) -> Any:
        return call_with_retries(call, what, attempts=self._attempts)
