"""Embedded store, before and after: qdrant-client's local mode (what `prism run` used until
sink/edge_store.py) against Prism's edge store (sink/edge_store.py on qdrant-edge-py, Qdrant's own
engine in-process, what `prism run` uses now), side by side in one run, each into a fresh temp dir.

- write throughput: the same points (qdrant_client PointStructs built outside the timer: uuid5 ids
  as Prism makes them, one named cosine vector "text", Prism-like payloads) written in batches of
  --batch-size; before: `QdrantClient(path=...).upsert(..., wait=True)` as the sink did; after:
  `Sink.write` on the embedded store (the driver's path: the adapter's upsert), then
  `close_embedded` (the flush) inside the timer; --repeats fresh stores each, interleaved, best kept;
- search: 50 query vectors, top-10 by "text": how many queries get the identical id list in the
  identical order, and the largest score difference (both exact);
- persistence: both stores closed and reopened from disk (reopen time), point count, 5 queries
  re-run (same ids as before the close);
- Prism's other operations on the reopened stores: count with the failed-extractors filter
  (must_not is_empty), delete by uri MatchAny, counts compared; and whether a second process can
  open a store that is open (both refuse; the edge store with StoreBusyError).

    .venv/bin/python benchmarks/embedded_store.py [--points 20000] [--dim 384] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

COLLECTION = "bench"
VECTOR = "text"
QUERIES = 50
TOP = 10
REOPEN_QUERIES = 5


def make_data(n: int, dim: int, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict[str, Any]], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.standard_normal((QUERIES, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids, payloads = [], []
    for i in range(n):
        file_no, chunk = divmod(i, 8)
        uri = f"s3://bench/docs/file-{file_no}.pdf"
        key = f"{uri}#page=1&chunk={chunk}"
        digest = uuid.uuid5(uuid.NAMESPACE_URL, uri).hex
        ids.append(str(uuid.uuid5(uuid.UUID(hex=digest), key)))  # as prism_pipeline.points.point_id
        payloads.append({
            "uri": uri, "key": key, "content_hash": digest, "modality": "text", "file_modality": "document",
            "page": 1, "chunk": chunk, "text": f"chunk {i:06d} " + "lorem ipsum dolor sit amet " * 3,
            "failed_extractors": ["faces"] if i % 7 == 0 else [],
        })
    return ids, vectors, payloads, queries


# --- qdrant-client local mode ------------------------------------------------------------------

def local_open(path: Path, dim: int, create: bool) -> Any:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    client = QdrantClient(path=str(path))
    if create:
        client.create_collection(COLLECTION, vectors_config={
            VECTOR: qm.VectorParams(size=dim, distance=qm.Distance.COSINE)})
    return client


def local_points(ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> list[Any]:
    from qdrant_client import models as qm

    return [qm.PointStruct(id=i, vector={VECTOR: v.tolist()}, payload=p)
            for i, v, p in zip(ids, vectors, payloads, strict=True)]


def local_write(client: Any, points: list[Any], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(points), batch):
        client.upsert(COLLECTION, points=points[i:i + batch], wait=True)
    return time.perf_counter() - started


def local_search(client: Any, query: np.ndarray) -> list[tuple[str, float]]:
    found = client.query_points(COLLECTION, query=query.tolist(), using=VECTOR, limit=TOP).points
    return [(str(p.id), float(p.score)) for p in found]


def local_count(client: Any, failed: bool = False) -> int:
    from qdrant_client import models as qm

    where = qm.Filter(must_not=[qm.IsEmptyCondition(is_empty=qm.PayloadField(key="failed_extractors"))])
    return client.count(COLLECTION, count_filter=where if failed else None, exact=True).count


def local_delete_uris(client: Any, uris: list[str]) -> None:
    from qdrant_client import models as qm

    client.delete(COLLECTION, wait=True, points_selector=qm.FilterSelector(filter=qm.Filter(
        must=[qm.FieldCondition(key="uri", match=qm.MatchAny(any=uris))])))


# --- Prism's edge store (sink/edge_store.py through sink/embedded.py) -----------------------------

def edge_open(state: Path, dim: int, create: bool) -> Any:
    from qdrant_client import models as qm

    from prism_pipeline.sink.embedded import embedded_client

    store = embedded_client(state)
    if create:
        store.create_collection(COLLECTION, vectors_config={
            VECTOR: qm.VectorParams(size=dim, distance=qm.Distance.COSINE)})
    return store


def edge_close(state: Path) -> None:
    from prism_pipeline.sink.embedded import close_embedded

    close_embedded(state)


def edge_write(state: Path, points: list[Any], batch: int) -> float:
    """Sink.write as the driver calls it (outcome rows carrying points), then the close's flush."""
    from prism_api import QdrantSink
    from prism_pipeline.sink import Sink

    sink = Sink(QdrantSink(collection=COLLECTION, batch_size=batch), (), state)
    outcomes = [{"point": p} for p in points]
    started = time.perf_counter()
    sink.write(outcomes)
    edge_close(state)
    return time.perf_counter() - started


def edge_search(store: Any, query: np.ndarray) -> list[tuple[str, float]]:
    found = store.query_points(COLLECTION, query=query.tolist(), using=VECTOR, limit=TOP).points
    return [(str(p.id), float(p.score)) for p in found]


# --- comparison --------------------------------------------------------------------------------

def compare(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]]) -> dict[str, Any]:
    same_order = sum([i for i, _ in x] == [i for i, _ in y] for x, y in zip(a, b, strict=True))
    same_set = sum({i for i, _ in x} == {i for i, _ in y} for x, y in zip(a, b, strict=True))
    diffs = [abs(sx - sy) for x, y in zip(a, b, strict=True) for (_, sx), (_, sy) in zip(x, y, strict=False)]
    return {"queries": len(a), "identical_ids_and_order": same_order, "identical_id_sets": same_set,
            "max_score_diff": float(max(diffs)) if diffs else None}


def second_process_refused(kind: str, path: Path) -> str:
    """Try to open `path` (a local-mode store, or the state dir of an edge store) from another
    process while this one holds it."""
    code = (f"from qdrant_client import QdrantClient; QdrantClient(path={str(path)!r})" if kind == "local"
            else f"from prism_pipeline.sink.embedded import embedded_client; embedded_client({str(path)!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return "opened (no lock)"
    return "refused: " + (done.stderr.strip().splitlines() or ["?"])[-1][:160]


def dir_mb(path: Path) -> dict[str, float]:
    """Apparent size and allocated size (edge preallocates sparse mmap files)."""
    files = [f.stat() for f in path.rglob("*") if f.is_file()]
    return {"apparent": round(sum(s.st_size for s in files) / 2**20, 1),
            "allocated": round(sum(s.st_blocks * 512 for s in files) / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    from importlib.metadata import version

    from prism_pipeline.sink.edge_store import EdgeStore
    from prism_pipeline.sink.embedded import store_path

    ids, vectors, payloads, queries = make_data(args.points, args.dim)
    work = Path(tempfile.mkdtemp(prefix="prism-embedded-"))
    result: dict[str, Any] = {"points": args.points, "dim": args.dim, "batch_size": args.batch_size,
                              "repeats": args.repeats, "qdrant_client": version("qdrant-client"),
                              "qdrant_edge_py": version("qdrant-edge-py")}

    points = local_points(ids, vectors, payloads)  # the same PointStructs for both
    local_times, edge_times = [], []
    local_client = None
    for r in range(args.repeats):  # interleaved, fresh stores; the last pair is kept for the checks
        if local_client is not None:
            local_client.close()
        local_client = local_open(work / f"local-{r}", args.dim, create=True)
        local_times.append(local_write(local_client, points, args.batch_size))
        assert local_count(local_client) == args.points
        edge_open(work / f"edge-{r}", args.dim, create=True)
        edge_times.append(edge_write(work / f"edge-{r}", points, args.batch_size))
    last = args.repeats - 1
    edge_state = work / f"edge-{last}"
    result["local_points_per_s"] = round(args.points / min(local_times))
    result["local_seconds"] = [round(t, 2) for t in local_times]
    result["edge_points_per_s"] = round(args.points / min(edge_times))
    result["edge_seconds"] = [round(t, 3) for t in edge_times]
    result["edge_over_local_write"] = round(min(local_times) / min(edge_times), 1)

    store = edge_open(edge_state, args.dim, create=False)
    assert store.count(COLLECTION).count == args.points
    started = time.perf_counter()
    local_hits = [local_search(local_client, q) for q in queries]
    result["local_ms_per_query"] = round((time.perf_counter() - started) * 1000 / QUERIES, 2)
    started = time.perf_counter()
    edge_hits = [edge_search(store, q) for q in queries]
    result["edge_ms_per_query"] = round((time.perf_counter() - started) * 1000 / QUERIES, 2)
    result["search_local_vs_edge"] = compare(local_hits, edge_hits)
    result["lock_edge"] = second_process_refused("edge", edge_state)
    result["lock_local"] = second_process_refused("local", work / f"local-{last}")

    # persistence: close, reopen from disk, count, re-run queries
    local_client.close()
    started = time.perf_counter()
    local_client = local_open(work / f"local-{last}", args.dim, create=False)
    persisted = {"local_reopen_s": round(time.perf_counter() - started, 3),
                 "local_count": local_count(local_client),
                 "local_vs_before": compare(local_hits[:REOPEN_QUERIES],
                                            [local_search(local_client, q) for q in queries[:REOPEN_QUERIES]]),
                 "local_disk_mb": dir_mb(work / f"local-{last}")}
    edge_close(edge_state)
    started = time.perf_counter()
    store = edge_open(edge_state, args.dim, create=False)
    store.count(COLLECTION)  # the shard opens on first use
    persisted |= {"edge_reopen_s": round(time.perf_counter() - started, 3),
                  "edge_count": store.count(COLLECTION).count,
                  "edge_vs_before": compare(edge_hits[:REOPEN_QUERIES],
                                           [edge_search(store, q) for q in queries[:REOPEN_QUERIES]]),
                  "edge_disk_mb": dir_mb(store_path(edge_state))}
    result["persistence"] = persisted

    # Prism's filters: failed-extractors count, delete by uri MatchAny (the first 10 files), through
    # the same qdrant_client calls on both
    uris = sorted({p["uri"] for p in payloads[:80]})
    ops = {"local_failed": local_count(local_client, failed=True), "edge_failed": local_count(store, failed=True)}
    local_delete_uris(local_client, uris)
    local_delete_uris(store, uris)
    ops["local_after_delete"] = local_count(local_client)
    ops["edge_after_delete"] = local_count(store)
    edge_close(edge_state)
    local_client.close()
    assert isinstance(store, EdgeStore)
    result["prism_filters"] = ops
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
