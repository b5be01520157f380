"""Server mode: a pool of writer actors upserts points in batches of sink.batchSize.

Each actor keeps one QdrantClient (its connection pool) for its life. An upsert that fails is
retried a bounded number of times with exponential backoff and jitter; every request carries the
sink's timeout. Ray Data backpressure keeps upstream stages from running ahead of the writers.
The API key comes from the QDRANT_API_KEY environment variable (set from the Secret by the
operator), never from the spec.
"""

from __future__ import annotations

import os

import numpy as np

from prism_api.conventions import ENV_QDRANT_API_KEY
from prism_pipeline import points as P
from prism_pipeline import rows as R

from .retries import call_with_retries


def server_client(url: str, timeout_s: float):
    from qdrant_client import QdrantClient

    return QdrantClient(url=url, api_key=os.environ.get(ENV_QDRANT_API_KEY) or None,
                        timeout=max(1, int(round(timeout_s))))


class QdrantWriter:
    """The sink stage in server mode (an actor pool): item rows in, outcome rows out."""

    def __init__(self, url: str, collection: str, timeout_s: float, vector_names: list[str],
                 payload_names: list[str], versions: dict[str, str]):
        self.client = server_client(url, timeout_s)
        self.collection = collection
        self.vector_names, self.payload_names = set(vector_names), set(payload_names)
        self.versions = versions

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = R.from_batch(batch)
        outs, pts = P.rows_to_outcomes(rows, self.vector_names, self.payload_names, self.versions,
                                       with_points=False)
        if pts:
            call_with_retries(lambda: self.client.upsert(self.collection, points=pts, wait=True),
                              f"upsert of {len(pts)} points into {self.collection!r}")
            for o in outs:
                o["written"] = o["status"] == R.ITEM
        return R.to_batch(outs) if outs else R.empty_batch()
