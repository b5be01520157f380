"""The Qdrant sink: server mode (distributed writer actors) or embedded mode (the driver writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prism_api import QdrantSink
from prism_api.conventions import BATCH_RESOURCE
from prism_pipeline.extractors import Extractor, Vector

from .collection import CollectionError, ensure_collections, files_collection, read_meta
from .embedded import StoreBusyError, build_points, embedded_client
from .server import QdrantWriter, SinkWriteError, call_with_retries, server_client

__all__ = ["CollectionError", "Sink", "SinkWriteError", "StoreBusyError", "files_collection", "read_meta"]

WRITERS_MAX = 4  # Qdrant guidance: 2-4 parallel writers per collection


class Sink:
    """Driver side of the sink: collection set-up, the write stage, and driver-side upserts."""

    def __init__(self, spec: QdrantSink, extractors: list[Extractor], state_dir: str | Path):
        self.spec = spec
        self.collection = spec.collection
        self.server = bool(spec.url)
        self.client = server_client(spec.url, spec.timeout_seconds) if self.server else embedded_client(state_dir)
        self.vector_names = [ex.name for ex in extractors if isinstance(ex.output, Vector)]
        self.payload_names = [ex.name for ex in extractors if not isinstance(ex.output, Vector)]
        self.versions = {ex.name: ex.version for ex in extractors}
        self.extractors = extractors

    def prepare(self) -> None:
        ensure_collections(self.client, self.collection, self.extractors, server=self.server)

    def add_stage(self, ds: Any, share: float) -> Any:
        """Append the stage that turns item rows into outcome rows (writing them in server mode)."""
        import ray

        kwargs = {"vector_names": self.vector_names, "payload_names": self.payload_names,
                  "versions": self.versions}
        if self.server:
            return ds.map_batches(
                QdrantWriter, batch_size=self.spec.batch_size, num_cpus=0.5, resources={BATCH_RESOURCE: share},
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=WRITERS_MAX),
                fn_constructor_kwargs={"url": self.spec.url, "collection": self.collection,
                                       "timeout_s": self.spec.timeout_seconds, **kwargs},
            )
        # Per block, not sink.batchSize: the driver batches upserts, and waiting here for a full
        # batch would hold back finished files (and the progress bar) until the stream ends.
        return ds.map_batches(build_points, batch_size=None, num_cpus=0.25,
                              resources={BATCH_RESOURCE: share}, fn_kwargs=kwargs)

    def write_points(self, points: list[Any]) -> None:
        """Embedded mode: the driver is the single writer."""
        if self.server:
            return
        size = self.spec.batch_size
        for start in range(0, len(points), size):
            chunk = points[start:start + size]
            call_with_retries(lambda c=chunk: self.client.upsert(self.collection, points=c, wait=True),
                                f"upsert of {len(chunk)} points into {self.collection!r}", attempts=2)

    def count(self) -> int:
        return self.client.count(self.collection, exact=True).count
